//! The console in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) against a native lab brought up by the real binary. A
//! learner starts the reference scenario from the page, walks the guide to
//! a checked answer, opens the failing trace from the log view and watches
//! the error chart rise. Screenshots land in `target/console-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use lab_testkit::{Down, LabCli};
use serde_json::{Value, json};

/// A program on PATH, or a failure that says how to get it.
fn require(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not on PATH: the console's browser test needs Debian's \
                 chromium and chromium-driver (`apt-get install -y chromium chromium-driver`)"
            )
        })
}

/// chromedriver on a free loopback port, killed when dropped.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    fn start(binary: &Path, log: &Path) -> Chromedriver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(log).expect("chromedriver's log");
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/console-screenshots`, next to the test binary's profile folder.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<test>")
        .to_owned();
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    dir
}

struct Browser {
    client: Client,
    base: String,
    shots: PathBuf,
}

impl Browser {
    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("saving a screenshot");
    }

    async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn exists(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// Clicks what `css` finds, without waiting for anything.
    async fn press(&self, css: &str) {
        let url = self.url().await;
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on {url}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking `{css}`: {e}"));
    }

    /// Clicks a link or a form's button, and waits until the next page
    /// has replaced this one (a mark left on this page is gone).
    async fn click(&self, css: &str) {
        self.client
            .execute("window.__labOld = true; return null", vec![])
            .await
            .unwrap();
        self.press(css).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let loaded = self
                .client
                .execute(
                    "return window.__labOld === undefined && document.readyState === 'complete'",
                    vec![],
                )
                .await;
            if let Ok(Value::Bool(true)) = loaded {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "clicking `{css}` led to no new page within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    async fn body(&self) -> String {
        self.text("main").await
    }
}

/// The guide's form button for `action` on the current step.
fn guide_button(action: &str) -> String {
    format!(r#"form[action="/actions/guide/{action}"] button"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_solves_null_name_in_the_console() {
    let chromium = require("chromium");
    let chromedriver = require("chromedriver");

    let dir = tempfile::tempdir().unwrap();
    let lab = LabCli::new(env!("CARGO_BIN_EXE_lab"), dir.path().join("state"));
    let _down = Down(&lab);
    lab.ok(&["up", "--runtime", "native"]);
    let status: Value = serde_json::from_str(&lab.ok(&["status", "--json"])).unwrap();
    let base = status["endpoints"]["console"]
        .as_str()
        .unwrap_or_else(|| panic!("`lab status --json` has no endpoints.console: {status}"))
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let driver = Chromedriver::start(&chromedriver, &dir.path().join("chromedriver.log"));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1000"],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no browser session from chromedriver ({e}); its log:\n{}",
                std::fs::read_to_string(dir.path().join("chromedriver.log")).unwrap_or_default()
            )
        });
    let browser = Browser {
        client,
        base,
        shots: screenshot_dir(),
    };

    // The lab: every component healthy, no fault, traffic under control.
    // A lab just up may still be answering its first admin calls: the
    // page is reloaded for up to 15 s before it must be whole.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        browser.goto("/").await;
        let page = browser.body().await;
        let healthy = browser
            .client
            .find_all(Locator::Css("td span.good"))
            .await
            .unwrap()
            .len();
        let calm = browser.exists("#no-faults").await;
        if healthy == 5 && calm {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{healthy} of 5 components healthy, no-faults shown: {calm}:\n{page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let rate = browser.client.find(Locator::Id("rate")).await.unwrap();
    rate.send_keys("20").await.unwrap();
    browser.click(r#"button[value="rate"]"#).await;
    assert_eq!(browser.text("#traffic-now").await, "20 requests per second");
    browser.shot("01-lab").await;
    browser
        .click(r#"form[action="/actions/traffic"] input[value="resume"] ~ button"#)
        .await;
    assert_eq!(
        browser.text("#traffic-now").await,
        "the original's spiky pacing"
    );

    // Start the reference scenario from the catalogue.
    browser.goto("/scenarios").await;
    browser
        .click(r#"form[action="/actions/scenario/start"] input[value="null-name"] ~ button"#)
        .await;
    assert!(
        browser.url().await.contains("/guide?id=null-name"),
        "{}",
        browser.url().await
    );
    assert!(browser.body().await.contains("null-name started"));
    browser.shot("02-scenario-started").await;

    // Walk every step: run its query until the check passes (symptoms
    // take a scrape or an export batch to show), one hint on the first.
    let mut step = 0;
    while browser.exists("#step").await {
        if step == 0 {
            browser.click(&guide_button("hint")).await;
            assert!(browser.exists("#hints li").await, "no hint shown");
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            browser.click(&guide_button("run")).await;
            let verdict = browser
                .client
                .find(Locator::Css("#verdict"))
                .await
                .expect("a verdict after running the query");
            if verdict.attr("class").await.unwrap().as_deref() == Some("good") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "step {} never passed: {}",
                step + 1,
                browser.body().await
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        if step == 0 {
            browser.shot("03-guide-step-1-passed").await;
        }
        if step == 1 {
            browser.shot("04-guide-step-2-trace-result").await;
        }
        browser.click(&guide_button("next")).await;
        step += 1;
    }
    assert_eq!(step, 5, "null-name has five steps");

    // The question: a wrong answer is refused, the right one accepted.
    browser.press(r#"input[value="postgres"]"#).await;
    browser.click("#question button[type=submit]").await;
    assert!(
        browser.text("#answer-verdict").await.starts_with("✗"),
        "{}",
        browser.body().await
    );
    browser.press(r#"input[value="mythical-server"]"#).await;
    browser.click("#question button[type=submit]").await;
    let verdict = browser.text("#answer-verdict").await;
    assert!(verdict.starts_with("✓ Right"), "{}", browser.body().await);
    browser.shot("05-answer-right").await;
    // The terminal guide sees the same progress.
    let progress: Value = serde_json::from_str(&lab.ok(&["scenario", "status", "--json"])).unwrap();
    assert_eq!(progress["progress"]["answered_right"], true, "{progress}");
    assert_eq!(
        progress["progress"]["passed"],
        json!([true, true, true, true, true])
    );

    // From the log view to the failing trace.
    let logql = r#"{service_name="mythical-server"} |= "not-null constraint""#;
    browser.goto(&with_query("/logs", logql)).await;
    assert!(
        browser.body().await.contains(logql),
        "the view shows its query"
    );
    browser.shot("06-logs").await;
    browser.click("a.trace-id").await;
    assert!(
        browser.url().await.contains("/trace/"),
        "{}",
        browser.url().await
    );
    assert!(
        browser.exists("svg.waterfall g.span.error").await,
        "the waterfall marks the failing span"
    );
    let page = browser.body().await;
    assert!(
        page.contains("violates not-null constraint") && page.contains("db.response.status_code"),
        "{page}"
    );
    browser.shot("07-trace").await;

    // The error chart rises.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut risen = false;
    while !risen {
        browser.goto("/metrics?since=5m").await;
        for path in browser
            .client
            .find_all(Locator::Css("#errors path.series"))
            .await
            .unwrap()
        {
            let max: f64 = path
                .attr("data-max")
                .await
                .unwrap()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0.0);
            risen |= max > 0.0;
        }
        assert!(
            risen || Instant::now() < deadline,
            "the 5xx chart never rose above 0"
        );
        if !risen {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
    browser.shot("08-metrics").await;

    // Diagnose names the fault, its evidence linked to the views.
    browser.goto("/diagnose").await;
    let cause = browser.text("#root-cause").await;
    assert!(cause.contains("null-name"), "{}", browser.body().await);
    assert!(browser.exists(r#"#evidence a[href^="/trace/"]"#).await);
    browser.shot("09-diagnose").await;

    // The profile view draws a flame graph (or says why not).
    browser.goto("/profiles").await;
    browser.shot("10-profiles").await;

    // Bad input is a clear error on the page, not a bare 500.
    browser.goto("/trace/not-a-trace").await;
    assert!(browser.body().await.contains("is not a trace id"));
    browser.goto(&with_query("/traces", "{ status = ")).await;
    let page = browser.body().await;
    assert!(
        page.contains("Error:") && browser.exists("#q").await,
        "{page}"
    );
    browser.shot("11-bad-query").await;

    // On a phone's width the guide still reads.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.goto("/guide").await;
    browser.shot("12-phone-guide").await;
    let overflow: Value = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow,
        json!(true),
        "the guide scrolls sideways on a phone"
    );

    // Stop from the page: every fault off.
    browser.goto("/scenarios").await;
    browser
        .click(r#"form[action="/actions/scenario/stop"] button"#)
        .await;
    assert!(browser.body().await.contains("null-name stopped"));
    browser.goto("/").await;
    assert!(browser.exists("#no-faults").await);

    browser.client.close().await.unwrap();
    drop(driver);
    eprintln!("screenshots in {}", browser.shots.display());
}

/// A console path with `q` set to `query`, encoded as a form encodes it.
fn with_query(path: &str, query: &str) -> String {
    let url = reqwest::Url::parse_with_params(&format!("http://console{path}"), [("q", query)])
        .expect("a console path");
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}
