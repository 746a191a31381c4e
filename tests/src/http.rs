//! A real HTTP server: `python3 -m http.server` serving a directory, for lists from the
//! upstream namespace and pages a client's name leads to.

use std::{
    fs,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::netns::{Netns, UPSTREAM_V4};

pub struct HttpServer {
    child: Child,
    pub dir: PathBuf,
    pub addr: SocketAddr,
}

impl HttpServer {
    /// Serves a new, empty directory on `UPSTREAM_V4`:8080 in `ns`, once it accepts
    /// connections.
    pub fn start(ns: &Netns) -> Result<Self> {
        Self::start_on(ns, UPSTREAM_V4)
    }

    /// The same on `ip`:8080.
    pub fn start_on(ns: &Netns, ip: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("dnsxdp-http-{}", ns.name));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let addr: SocketAddr = format!("{ip}:8080").parse()?;
        let child = ns
            .command("python3")
            .args(["-m", "http.server", "--bind", ip, "8080", "--directory"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting python3 -m http.server (cargo xtask setup installs python3)")?;
        let mut server = HttpServer { child, dir, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!("python3 -m http.server exited: {status}");
            }
            let reached =
                ns.enter(move || TcpStream::connect_timeout(&addr, Duration::from_millis(200)))?;
            if reached.is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("python3 -m http.server did not listen within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL of `file` in the served directory.
    pub fn url(&self, file: &str) -> String {
        format!("http://{}/{file}", self.addr)
    }

    /// Writes `text` as `file` in the served directory.
    pub fn put(&self, file: &str, text: &str) -> Result<()> {
        Ok(fs::write(self.dir.join(file), text)?)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        Path::new(&self.dir).join(file)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
