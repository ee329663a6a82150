//! The loopback side of the installed-app flow: a one-shot HTTP listener on 127.0.0.1 that
//! waits for the browser's redirect from Google, tells it apart from anything else that
//! connects (favicons, speculative connections), checks `state`, and answers the browser with a
//! small page.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use super::AuthorizeError;

/// Longest request head read from the browser; the redirect's is well under it.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// How long one browser connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What one request to the loopback address was.
#[derive(Debug, PartialEq, Eq)]
pub enum Callback {
    /// The code (and the scopes Google says it granted).
    Code {
        /// The authorization code.
        code: String,
        /// `state` as received.
        state: Option<String>,
        /// `scope` as received.
        scope: Option<String>,
    },
    /// Google's error redirect.
    Error {
        /// `error`.
        error: String,
        /// `error_description`.
        description: Option<String>,
        /// `state` as received.
        state: Option<String>,
    },
    /// Something else (a favicon, a curious local process): answered 404 and ignored.
    Other,
}

/// Reads the request line's target (`/?state=…&code=…`).
pub fn parse_callback(target: &str) -> Callback {
    let Ok(url) = Url::parse(&format!("http://127.0.0.1{target}")) else {
        return Callback::Other;
    };
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let state = param("state");
    match (param("code"), param("error")) {
        (_, Some(error)) => Callback::Error { error, description: param("error_description"), state },
        (Some(code), None) if !code.is_empty() => Callback::Code { code, state, scope: param("scope") },
        _ => Callback::Other,
    }
}

/// Waits for the redirect and returns the code and the scopes the redirect names. Connections
/// are read concurrently: browsers open speculative connections that send nothing, and one of
/// those must not hold the real redirect up.
pub(super) async fn receive_code(
    listener: &TcpListener,
    state: &str,
) -> Result<(String, Option<String>), AuthorizeError> {
    let (requests, mut received) = tokio::sync::mpsc::channel(8);
    loop {
        let (mut stream, target) = tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, _)) => {
                        let requests = requests.clone();
                        tokio::spawn(async move {
                            if let Some(request) = read_target(stream).await {
                                let _ = requests.send(request).await;
                            }
                        });
                    }
                    // Out of file descriptors, say: wait rather than spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
                continue;
            }
            Some(request) = received.recv() => request,
        };
        match parse_callback(&target) {
            Callback::Other => respond(&mut stream, 404, "Not the authorization redirect", "").await,
            Callback::Code { state: got, .. } | Callback::Error { state: got, .. } if got.as_deref() != Some(state) => {
                respond(&mut stream, 400, "Authorization refused", "The state does not match: run the command again.")
                    .await;
                return Err(AuthorizeError::StateMismatch);
            }
            Callback::Error { error, description, .. } => {
                let denied = AuthorizeError::Denied { error, description };
                respond(&mut stream, 400, "Mailroom was not authorised", &denied.to_string()).await;
                return Err(denied);
            }
            Callback::Code { code, scope, .. } => {
                respond(
                    &mut stream,
                    200,
                    "Mailroom is authorised",
                    "You can close this tab and return to the terminal.",
                )
                .await;
                return Ok((code, scope));
            }
        }
    }
}

/// The request target of one connection, or `None` for a connection that sent no usable
/// request in time.
async fn read_target(mut stream: TcpStream) -> Option<(TcpStream, String)> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    if !tokio::time::timeout(REQUEST_TIMEOUT, read).await.unwrap_or(false) {
        return None;
    }
    let line = String::from_utf8_lossy(&head).lines().next()?.to_owned();
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?, parts.next()?);
    (method == "GET" && target.starts_with('/')).then(|| (stream, target.to_owned()))
}

/// Answers the browser with a small page; a browser that went away is no error.
async fn respond(stream: &mut TcpStream, status: u16, title: &str, text: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Not Found",
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0}</title></head>\
         <body><h1>{0}</h1><p>{1}</p></body></html>",
        html_escape(title),
        html_escape(text)
    );
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use gmail::scopes;

    use super::*;

    #[test]
    fn callbacks_are_told_apart() {
        assert_eq!(
            parse_callback("/?state=s&code=4/0abc&scope=https://www.googleapis.com/auth/gmail.modify"),
            Callback::Code { code: "4/0abc".into(), state: Some("s".into()), scope: Some(scopes::MODIFY.into()) }
        );
        assert_eq!(
            parse_callback("/?error=access_denied&state=s"),
            Callback::Error { error: "access_denied".into(), description: None, state: Some("s".into()) }
        );
        assert_eq!(parse_callback("/favicon.ico"), Callback::Other);
        assert_eq!(parse_callback("/?code="), Callback::Other);
    }
}
