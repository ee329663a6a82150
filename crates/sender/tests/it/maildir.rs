//! The Maildir outbox's file names: every delivery is a file of its own, named the Maildir way
//! (`time.unique.host`), with the reply's key in it — so a reply delivered twice in one second
//! is two files, not one overwritten, and a sender taking over a crashed delivery finds the
//! reply by its key, in names written today and in the names older senders wrote.

use mailroom_tests::TestDir;
use sender::sink::{Kind, Lookup, MaildirSink, OutgoingReply, Sink};

use crate::AGENT;

fn outgoing(message_id: &str) -> OutgoingReply {
    OutgoingReply {
        message_id: message_id.to_owned(),
        raw: b"From: support@northwind.example\r\nTo: ann@example.com\r\nSubject: Re: hi\r\n\r\nHello.\r\n".to_vec(),
        from: AGENT.into(),
        to: "ann@example.com".into(),
        thread_id: None,
    }
}

#[tokio::test]
async fn one_reply_delivered_twice_in_the_same_second_is_two_files_and_either_is_found() {
    let dir = TestDir::create();
    let sink = MaildirSink::new(&dir.path).expect("outbox");
    let reply = outgoing(&sender::reply_message_id(AGENT, "email-1"));
    let key = MaildirSink::reply_key(&reply.message_id);
    mailroom_tests::start_of_next_second().await;
    let first = sink.deliver(&reply, Kind::Send).await.expect("first delivery");
    let second = sink.deliver(&reply, Kind::Send).await.expect("second delivery");
    let seconds = |name: &str| name.split('.').next().expect("time part").to_owned();
    assert_eq!(seconds(&first), seconds(&second), "both in one second: {first} {second}");
    assert_ne!(first, second);
    for name in [&first, &second] {
        // time.unique.host, flagged seen, with the key in the unique part.
        let (base, flags) = name.split_once(":2,").expect("info part");
        assert_eq!(flags, "S");
        let parts: Vec<&str> = base.splitn(3, '.').collect();
        assert!(parts[0].parse::<u64>().is_ok() && !parts[2].is_empty(), "{name}");
        assert!(parts[1].starts_with('M') && parts[1].ends_with(&format!("_{key}")), "{name}");
        assert_eq!(MaildirSink::key_in_name(name), Some(key.as_str()));
        assert!(dir.path.join("cur").join(name).is_file(), "{name} in cur/");
    }
    assert_eq!(std::fs::read_dir(dir.path.join("tmp")).expect("tmp/").count(), 0, "nothing left in tmp/");
    let deliveries = MaildirSink::deliveries(&dir.path).expect("read the outbox");
    assert_eq!(deliveries.iter().filter(|d| d.key.as_ref() == Some(&key)).count(), 2, "{deliveries:?}");
    assert_eq!(std::fs::read(&deliveries[0].path).expect("read"), reply.raw);
    let Lookup::Delivered(found) = sink.find(&reply, Kind::Send).await.expect("find") else {
        panic!("the reply is there")
    };
    assert!(found == first || found == second, "{found}");
    // Another reply, and the other folder, are not it.
    let other = outgoing(&sender::reply_message_id(AGENT, "email-2"));
    assert_eq!(sink.find(&other, Kind::Send).await.expect("find"), Lookup::Absent);
    assert_eq!(sink.find(&reply, Kind::Draft).await.expect("find"), Lookup::Absent);
}

#[tokio::test]
async fn a_reply_an_older_sender_delivered_under_the_old_name_is_still_found() {
    let dir = TestDir::create();
    let sink = MaildirSink::new(&dir.path).expect("outbox");
    let reply = outgoing(&sender::reply_message_id(AGENT, "email-3"));
    let key = MaildirSink::reply_key(&reply.message_id);
    // `<key>.<seconds>.mailroom`: the names written before every delivery got a unique one.
    let old = format!("{key}.1764150000.mailroom:2,S");
    std::fs::write(dir.path.join(".Drafts/new").join(&old), &reply.raw).expect("write");
    assert_eq!(sink.find(&reply, Kind::Draft).await.expect("find"), Lookup::Delivered(old.clone()));
    assert_eq!(MaildirSink::deliveries(&dir.path.join(".Drafts")).expect("read")[0].key, Some(key));
    // A file that is not ours (a mail client's own message) is listed, under no reply.
    std::fs::write(dir.path.join("cur/1764150001.M1P2.desk:2,S"), b"x").expect("write");
    let files = MaildirSink::deliveries(&dir.path).expect("read");
    assert_eq!((files.len(), files[0].key.as_deref()), (1, None), "{files:?}");
}
