//! Email over SMTP (`lettre`): the transport every component that mails shares, and the two
//! messages accounts send (verify an address, reset a password). Links carry their token in the
//! URL's fragment, which browsers never send to a server: it reaches no access log.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// A mailer sending through `smtp_url` (smtp://, smtps://, with credentials if any) as `from`.
    pub fn new(smtp_url: &str, from: &str, timeout: std::time::Duration) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            // The error is lettre's, which never repeats the URL (it may hold a password).
            .map_err(|error| anyhow::anyhow!("SMTP_URL is not usable: {error}"))?
            .timeout(Some(timeout))
            .build();
        let from = from.parse().map_err(|error| anyhow::anyhow!("the sender {from:?} is not an address: {error}"))?;
        Ok(Mailer { transport, from })
    }

    /// Sends a plain-text message; `message_id` (without the brackets) lets a resent one be
    /// recognised.
    pub async fn send(&self, to: &str, message_id: &str, subject: &str, text: String) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|error| format!("{to:?} is not an address: {error}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{message_id}@content-processor>")))
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|error| format!("cannot build the message: {error}"))?;
        self.transport.send(message).await.map(drop).map_err(|error| error.to_string())
    }
}

/// How accounts mail their owners: the mailer, and where the UI is (links point there).
#[derive(Clone)]
pub struct AccountMail {
    pub mailer: Mailer,
    /// The UI's address as users reach it, e.g. `https://content-processor.example.com`.
    pub public_url: String,
}

/// What an emailed link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Verify,
    Reset,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Verify => "verify",
            Purpose::Reset => "reset",
        }
    }

    /// How long a link stays usable.
    pub fn lifetime_hours(self) -> i32 {
        match self {
            Purpose::Verify => 48,
            Purpose::Reset => 1,
        }
    }

    /// The subject and text of the message carrying `link`.
    pub fn message(self, link: &str) -> (&'static str, String) {
        match self {
            Purpose::Verify => (
                "Confirm your email address",
                format!(
                    "Someone, hopefully you, made a content-processor account with this address.\n\n\
                     Confirm it to get your verdicts by email:\n{link}\n\n\
                     The link works once, for 48 hours. If it was not you, ignore this message: \
                     nothing is mailed to an address until it is confirmed.\n"
                ),
            ),
            Purpose::Reset => (
                "Reset your content-processor password",
                format!(
                    "Someone, hopefully you, asked to reset the password of the content-processor \
                     account with this address.\n\nChoose a new password here:\n{link}\n\n\
                     The link works once, for an hour. If it was not you, ignore this message: \
                     your password stays as it is.\n"
                ),
            ),
        }
    }
}

/// The subject and text of the note that someone signed up with an address that has an account.
pub fn sign_up_attempt(public_url: &str) -> (&'static str, String) {
    (
        "Someone tried to sign up with your address",
        format!(
            "Someone, perhaps you, tried to make a content-processor account with this address, \
             which has one already. Nothing has changed.\n\n\
             If it was you, sign in at {public_url}/, where you can also reset a forgotten password. \
             If it was not, ignore this message.\n"
        ),
    )
}
