//! Driving the UI in a real browser: Debian's Chromium through chromedriver, one session per
//! simulated user (each with its own cookies).

use std::path::PathBuf;
use std::process::Stdio;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use super::process::free_port;
use super::DEADLINE;

/// Where the repository is: the built UI and the screenshots live there.
pub fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `artifacts/`, where screenshots go, created if needed.
pub fn artifacts() -> PathBuf {
    let dir = repository().join("artifacts");
    std::fs::create_dir_all(&dir).expect("the artifacts directory");
    dir
}

/// The built UI, which a test system must be told to serve.
pub fn built_ui() -> PathBuf {
    let dir = repository().join("ui/dist");
    assert!(dir.join("index.html").is_file(), "the UI is not built: run scripts/build-ui (scripts/test does)");
    dir
}

/// How a session's screen looks.
#[derive(Clone, Copy)]
pub enum Screen {
    Desktop,
    /// A phone 390 CSS pixels wide (Chromium windows are never narrower than 500, so this is
    /// its device emulation).
    Phone,
}

/// A chromedriver of this test's own, stopped when dropped.
pub struct Chromedriver {
    port: u16,
    _process: tokio::process::Child,
}

impl Chromedriver {
    pub async fn start() -> Chromedriver {
        let port = free_port();
        let process = tokio::process::Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/test installs it)");
        super::eventually("chromedriver listens", || async { tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ()) }).await;
        Chromedriver { port, _process: process }
    }

    /// Starts a headless Chromium session (its own cookies) on `url`.
    pub async fn open(&self, url: &str, screen: Screen) -> Client {
        let mut options = json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1280,900"],
        });
        if let Screen::Phone = screen {
            options["mobileEmulation"] = json!({"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2}});
        }
        let capabilities = json!({ "goog:chromeOptions": options });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session through chromedriver");
        client.goto(url).await.unwrap();
        client
    }
}

/// Closes the browsers whatever the scenario's `outcome` (chromedriver does not take them down
/// with it), then passes a failure on.
pub async fn close_all<const N: usize>(clients: [Client; N], outcome: std::thread::Result<()>) {
    for client in clients {
        let _ = client.close().await;
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Types `content` into the submit form and sends it.
pub async fn submit(client: &Client, content: &str) {
    let area = client.find(Locator::Css("textarea#content")).await.unwrap();
    area.send_keys(content).await.unwrap();
    client.find(Locator::Css("form.submit-form button[type=submit]")).await.unwrap().click().await.unwrap();
}

/// Waits until the page lists the submission with `content` as `status`.
pub async fn wait_until_shown(client: &Client, content: &str, status: &str) {
    super::eventually(&format!("the page shows {content:?} as {status}"), || async {
        let shown = client
            .execute(
                "const li = [...document.querySelectorAll('li.submission')].find(li => li.querySelector('.content').textContent === arguments[0]);
                 return li ? li.dataset.status : null;",
                vec![json!(content)],
            )
            .await
            .ok()?;
        (shown == status).then_some(())
    })
    .await;
}

/// Signs in through the form (first creating the account when `create`), then waits for the
/// live feed.
pub async fn sign_in(client: &Client, email: &str, password: &str, create: bool) {
    client.wait().at_most(DEADLINE).for_element(Locator::Css("form.auth-form")).await.expect("the sign-in form");
    if create {
        client.find(Locator::Css("form.auth-form button.switch-mode")).await.unwrap().click().await.unwrap();
    }
    client.find(Locator::Css("input#email")).await.unwrap().send_keys(email).await.unwrap();
    client.find(Locator::Css("input#password")).await.unwrap().send_keys(password).await.unwrap();
    client.find(Locator::Css("form.auth-form button[type=submit]")).await.unwrap().click().await.unwrap();
    client.wait().at_most(DEADLINE).for_element(Locator::Css("p.connection.live")).await.expect("signed in, the page connects live");
}
