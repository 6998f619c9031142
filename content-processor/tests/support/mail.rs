//! A real SMTP server for the notification tests: Python's aiosmtpd (from PyPI, installed by
//! `scripts/test`), writing every message it accepts to a Maildir the test reads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub struct SmtpServer {
    pub port: u16,
    maildir: PathBuf,
    process: tokio::process::Child,
}

/// One received message: its headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct Mail {
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Drop for SmtpServer {
    /// The server stops and its Maildir goes, unless the test failed: then the mail stays for
    /// whoever looks into it.
    fn drop(&mut self) {
        let _ = self.process.start_kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.maildir);
        }
    }
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let python = std::env::var("CONTENT_PROCESSOR_PYTHON").unwrap_or_else(|_| "python3".into());
        let port = super::process::free_port();
        let maildir = super::scratch_dir("maildir");
        let process = tokio::process::Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} -m aiosmtpd ({e}); scripts/test installs it"));
        super::eventually("the SMTP server listens", || async { tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok() }).await;
        SmtpServer { port, maildir, process }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<Mail> {
        let mut mails = Vec::new();
        for folder in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(folder)) else { continue };
            for entry in entries.flatten() {
                let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
                mails.push(parse(&text));
            }
        }
        mails
    }

    /// Waits until `done` holds for the messages received.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Mail]) -> bool) -> Vec<Mail> {
        super::eventually(what, || async {
            let mails = self.messages();
            done(&mails).then_some(mails)
        })
        .await
    }
}

fn parse(text: &str) -> Mail {
    let text = text.replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut headers: HashMap<String, String> = HashMap::new();
    let mut last: Option<String> = None;
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(value) = last.as_ref().and_then(|name| headers.get_mut(name)) {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            headers.insert(name.clone(), value.trim().to_owned());
            last = Some(name);
        }
    }
    let body = match headers.get("content-transfer-encoding").map(|encoding| encoding.to_ascii_lowercase()) {
        Some(encoding) if encoding == "quoted-printable" => quoted_printable(body),
        _ => body.to_owned(),
    };
    Mail { headers, body }
}

/// The text of a quoted-printable body (RFC 2045): soft line breaks joined, `=XX` decoded. A
/// long line (a link) is always sent so.
fn quoted_printable(body: &str) -> String {
    let joined = body.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'=').then(|| joined.get(i + 1..i + 3)).flatten().and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match hex {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// How long mail may take to arrive after its notification.
pub const MAIL_WAIT: Duration = Duration::from_secs(60);
