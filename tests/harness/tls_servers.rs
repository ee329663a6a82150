//! Throw-away PostgreSQL and Redis servers that speak only TLS, for the tests of `sslmode`,
//! `sslrootcert`, client certificates and `rediss://`.
//!
//! Each test that needs one starts its own (nextest runs every test in a process of its own, so
//! sharing one per process would gain nothing): certificates made with `openssl` into a
//! temporary directory, a free port on 127.0.0.1, and everything stopped and deleted on drop,
//! even when the test fails. The machine's default PostgreSQL, Redis and RabbitMQ are never
//! touched. These are throw-away test certificates; nothing here is meant for production.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection as _, PgConnection};

use crate::{TestDir, free_port};

/// The certificates a TLS test needs, in one temporary directory.
///
/// `ca.pem` signs `server.pem` (for `localhost` and `127.0.0.1`), `client.pem` (CN
/// [`CERT_USER`], the PostgreSQL role that must present it) and `client-next.pem` (the same CN,
/// what `client.pem` is rotated to); `wrong-ca.pem` signs nothing the
/// servers use, and `wrong-client.pem` is signed by it. Keys are `<name>-key.pem` (PKCS#8).
#[derive(Debug)]
pub struct TestCerts {
    dir: TestDir,
}

/// The PostgreSQL role that may only log in with a client certificate (whose CN it is).
pub const CERT_USER: &str = "mailroom_cert";

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).stdin(Stdio::null()).output().expect("run openssl (is it installed?)");
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

impl TestCerts {
    /// Generates a CA, a server and a client certificate, and an unrelated CA with its own client
    /// certificate (what a misconfigured side trusts or presents).
    pub fn generate() -> Self {
        let certs = Self { dir: TestDir::create() };
        certs.ca("ca", "Mailroom datastore test CA");
        certs.ca("wrong-ca", "Unrelated test CA");
        certs.leaf(
            "server",
            "ca",
            "localhost",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n\
             subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        );
        let client = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n";
        certs.leaf("client", "ca", CERT_USER, client);
        // The certificate `client.pem` is rotated to: same CA and CN, another key and serial.
        certs.leaf("client-next", "ca", CERT_USER, client);
        certs.leaf("wrong-client", "wrong-ca", CERT_USER, client);
        certs
    }

    /// Path of one of the files (`ca.pem`, `client-key.pem`, …).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path.join(name)
    }

    /// [`TestCerts::path`] as a string, for URLs and environment variables.
    pub fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn key(&self, name: &str) -> String {
        let key = self.file(&format!("{name}-key.pem"));
        openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key]);
        key
    }

    fn ca(&self, name: &str, cn: &str) {
        let key = self.key(name);
        let subject = format!("/CN={cn}");
        let out = self.file(&format!("{name}.pem"));
        let fixed = "req -x509 -new -sha256 -days 2 -addext basicConstraints=critical,CA:TRUE \
                     -addext keyUsage=critical,keyCertSign,cRLSign";
        let args: Vec<&str> = fixed.split_whitespace().chain(["-key", &key, "-subj", &subject, "-out", &out]).collect();
        openssl(&args);
    }

    fn leaf(&self, name: &str, ca: &str, cn: &str, extensions: &str) {
        let key = self.key(name);
        let (csr, ext) = (self.file(&format!("{name}.csr")), self.file(&format!("{name}.ext")));
        openssl(&["req", "-new", "-key", &key, "-subj", &format!("/CN={cn}"), "-out", &csr]);
        std::fs::write(&ext, extensions).expect("write extensions");
        let (ca_cert, ca_key) = (self.file(&format!("{ca}.pem")), self.file(&format!("{ca}-key.pem")));
        let out = self.file(&format!("{name}.pem"));
        let serial = serial();
        let args = ["x509", "-req", "-sha256", "-days", "2", "-in", &csr, "-CA", &ca_cert, "-CAkey", &ca_key];
        openssl(&[&args[..], &["-set_serial", &serial, "-extfile", &ext, "-out", &out]].concat());
    }
}

/// A serial number that differs between the certificates of one run (no serial file to share).
fn serial() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(1);
    format!("{}", nanos % 1_000_000_000_000 + u128::from(std::process::id()))
}

/// The user and group PostgreSQL's programs must run as: they refuse to run as root, which the
/// tests are here. `None` when the tests do not run as root (then they run as the tests' user).
fn postgres_ids() -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> Option<u32> {
        let out = Command::new("id").args(args).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id(&["-u"])? != 0 {
        return None;
    }
    Some((id(&["-u", "postgres"]).expect("a postgres user"), id(&["-g", "postgres"]).expect("a postgres group")))
}

/// The directory of `initdb` and `pg_ctl`: `MAILROOM_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off the PATH), else the PATH.
fn pg_bin(program: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("MAILROOM_TEST_PG_BIN") {
        return Path::new(&dir).join(program);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin").join(program))))
        .filter(|(_, p)| p.exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p).unwrap_or_else(|| PathBuf::from(program))
}

fn as_postgres(program: &str, ids: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(pg_bin(program));
    if let Some((uid, gid)) = ids {
        use std::os::unix::process::CommandExt as _;
        cmd.uid(uid).gid(gid);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Makes `path` (recursively) the PostgreSQL user's: the server reads its key only from a file
/// it owns with no access for others.
fn give_to_postgres(path: &Path, ids: Option<(u32, u32)>) {
    if let Some((uid, gid)) = ids {
        let status = Command::new("chown").arg("-R").arg(format!("{uid}:{gid}")).arg(path).status().expect("chown");
        assert!(status.success(), "chown {}", path.display());
    }
}

/// A PostgreSQL cluster of its own that accepts only TLS connections on 127.0.0.1 (`hostssl`
/// lines only), with trust authentication, and the role [`CERT_USER`] that must also present a
/// client certificate signed by the test CA (`clientcert=verify-full`). Stopped and deleted on
/// drop.
#[derive(Debug)]
pub struct TlsPostgres {
    /// The server's TCP port.
    pub port: u16,
    dir: TestDir,
    data: PathBuf,
    ids: Option<(u32, u32)>,
}

impl TlsPostgres {
    /// `initdb`, TLS configuration, start (waiting until it accepts connections), and the
    /// certificate-only role.
    pub async fn start(certs: &TestCerts) -> Self {
        let ids = postgres_ids();
        let dir = TestDir::create();
        let data = dir.path.join("data");
        let tls = dir.path.join("tls");
        std::fs::create_dir_all(&tls).expect("tls dir");
        for file in ["server.pem", "server-key.pem", "ca.pem"] {
            std::fs::copy(certs.path(file), tls.join(file)).expect("copy certificate");
        }
        let mut key_perms = std::fs::metadata(tls.join("server-key.pem")).expect("key").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut key_perms, 0o600);
        std::fs::set_permissions(tls.join("server-key.pem"), key_perms).expect("chmod key");
        give_to_postgres(&dir.path, ids);

        let out = as_postgres("initdb", ids)
            .args(["--auth=trust", "--username=postgres", "--no-sync", "--no-locale", "--encoding=UTF8", "-D"])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));

        let port = free_port();
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{sockets}'\n\
             ssl = on\nssl_cert_file = '{tls}/server.pem'\nssl_key_file = '{tls}/server-key.pem'\n\
             ssl_ca_file = '{tls}/ca.pem'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             shared_buffers = 16MB\nmax_connections = 40\n",
            sockets = dir.path.display(),
            tls = tls.display(),
        );
        append(&data.join("postgresql.conf"), &conf);
        // TLS only: no `host` or `local` lines, so a plain connection finds no entry and is refused.
        let hba = format!(
            "hostssl all {CERT_USER} 127.0.0.1/32 trust clientcert=verify-full\nhostssl all all 127.0.0.1/32 trust\n"
        );
        std::fs::write(data.join("pg_hba.conf"), hba).expect("pg_hba.conf");
        give_to_postgres(&data, ids);

        let log = dir.path.join("server.log");
        let out = as_postgres("pg_ctl", ids)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .output()
            .expect("run pg_ctl start");
        let server = Self { port, dir, data, ids };
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let admin = server.url("postgres", "sslmode=require");
        let mut conn = PgConnection::connect(&admin).await.expect("connect to the TLS-only cluster");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE ROLE {CERT_USER} LOGIN CREATEDB")))
            .execute(&mut conn)
            .await
            .expect("role");
        let _ = conn.close().await;
        server
    }

    /// URL of database `db` as `postgres` with the query string `params` (e.g.
    /// `sslmode=verify-full&sslrootcert=…`).
    pub fn url(&self, db: &str, params: &str) -> String {
        self.url_as("postgres", db, params)
    }

    /// Like [`TlsPostgres::url`], as another role.
    pub fn url_as(&self, user: &str, db: &str, params: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{db}?{params}", self.port)
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("server.log")).unwrap_or_default()
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).expect("open for append");
    file.write_all(text.as_bytes()).expect("append");
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        // Immediate: the cluster is deleted next, so nothing needs a clean shutdown.
        let _ = as_postgres("pg_ctl", self.ids)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A `redis-server` of its own with only a TLS port on 127.0.0.1 (its plain port is 0, so off),
/// persisting nothing. Killed on drop.
#[derive(Debug)]
pub struct TlsRedis {
    /// The TLS port.
    pub port: u16,
    child: std::process::Child,
    dir: TestDir,
}

/// Whether a [`TlsRedis`] asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// A client may present one (then it must be signed by the test CA).
    Optional,
    /// Every client must present one.
    Required,
}

impl TlsRedis {
    /// Starts the server and waits until its TLS port accepts connections.
    pub async fn start(certs: &TestCerts, client_certs: ClientCerts) -> Self {
        let dir = TestDir::create();
        let port = free_port();
        let auth = match client_certs {
            ClientCerts::Optional => "optional",
            ClientCerts::Required => "yes",
        };
        let log = std::fs::File::create(dir.path.join("redis.log")).expect("log file");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1", "--tls-port", &port.to_string()])
            .args(["--tls-cert-file", &certs.file("server.pem"), "--tls-key-file", &certs.file("server-key.pem")])
            .args(["--tls-ca-cert-file", &certs.file("ca.pem"), "--tls-auth-clients", auth])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir.path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start redis-server (is it installed, with TLS?)");
        let mut server = Self { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("redis-server exited with {status}: {}", server.log());
            }
            assert!(Instant::now() < deadline, "redis-server did not listen on {port}: {}", server.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// The `rediss://` URL of the server.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
