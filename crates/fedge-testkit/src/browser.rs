//! A real Chromium for the browser tests (the console, the CVI page):
//! Debian's chromedriver on a free port and headless Chromium sessions
//! through fantoccini (WebDriver).
//!
//! Owns the chromedriver process (killed on drop) and each session's
//! throw-away profile. It never reaches beyond loopback and never leaves a
//! chromedriver running after its test.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};

/// chromedriver on a port picked by binding port 0 first; killed on drop.
pub struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; .ci/test installs it)");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "chromedriver never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            port,
            profile: tempfile::tempdir().unwrap(),
        }
    }

    /// A headless Chromium session of `width` x `height`, with its own
    /// profile and `args` besides the usual ones.
    pub async fn browser(&self, (width, height): (u32, u32), args: &[&str]) -> Client {
        let profile = self
            .profile
            .path()
            .join(format!("p{}", rand::random::<u32>()));
        let mut all = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-gpu".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let caps = serde_json::json!({
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": all }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        // Two rustls providers are compiled in (ring, and aws-lc through
        // fantoccini's connector): this process uses ring, as fedge does.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let c = ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session");
        c.set_window_size(width, height).await.unwrap();
        c
    }
}
