//! Where a list comes from: a file, read each time, or an http(s) URL, downloaded and kept on
//! disk so that a restart, or a failed download, still has the last good copy.

use std::{
    fmt,
    hash::{DefaultHasher, Hash as _, Hasher as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, anyhow, bail};
use http::{Request, StatusCode, Uri, header};
use hyper::body::Body as _;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    time::timeout,
};
use tokio_rustls::TlsConnector;

/// The longest a download may take, connection included.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest list taken: well above the big public lists (tens of MB).
const MAX_LIST: usize = 256 << 20;
const MAX_REDIRECTS: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Url(Uri),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Url(uri) => write!(f, "{uri}"),
        }
    }
}

impl Source {
    /// A URL if it starts with `http://` or `https://`, else a file path.
    pub fn parse(s: &str) -> Result<Source, String> {
        if !(s.starts_with("http://") || s.starts_with("https://")) {
            if s.is_empty() {
                return Err("an empty file name".into());
            }
            return Ok(Source::File(s.into()));
        }
        let uri: Uri = s.parse().map_err(|_| format!("invalid URL '{s}'"))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("invalid URL '{s}': no host"));
        }
        Ok(Source::Url(uri))
    }

    /// The file a URL's last good download is kept in, under `dir`.
    fn kept(&self, dir: &Path) -> Option<PathBuf> {
        let Source::Url(uri) = self else { return None };
        let mut h = DefaultHasher::new();
        uri.to_string().hash(&mut h);
        Some(dir.join(format!("{:016x}.list", h.finish())))
    }

    /// The list as last fetched, and when: a file as it is now, a URL as last kept.
    pub fn last_good(&self, dir: &Path) -> anyhow::Result<(String, SystemTime)> {
        let path = match self {
            Source::File(path) => path.clone(),
            Source::Url(_) => self.kept(dir).context("no kept copy")?,
        };
        let read = || -> std::io::Result<_> {
            let when = match self {
                Source::File(_) => SystemTime::now(),
                Source::Url(_) => std::fs::metadata(&path)?.modified()?,
            };
            Ok((std::fs::read_to_string(&path)?, when))
        };
        read().with_context(|| match self {
            Source::File(_) => format!("reading {self}"),
            Source::Url(_) => format!("no copy of {self} kept in {}", dir.display()),
        })
    }

    /// The list now: a file read, a URL downloaded.
    pub async fn fetch(&self, dir: &Path, tls: Option<&TlsConnector>) -> anyhow::Result<String> {
        let Source::Url(uri) = self else {
            return Ok(self.last_good(dir)?.0);
        };
        timeout(DOWNLOAD_TIMEOUT, download(uri.clone(), tls))
            .await
            .map_err(|_| anyhow!("downloading {self}: no list within {DOWNLOAD_TIMEOUT:?}"))?
            .with_context(|| format!("downloading {self}"))
    }

    /// Keeps `text`, a good download of a URL, in `dir` for the next start.
    pub fn keep(&self, dir: &Path, text: &str) {
        let Some(kept) = self.kept(dir) else { return };
        // Written aside and renamed: a crash never leaves half a list to start from.
        let part = kept.with_extension("part");
        let keep = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&part, text))
            .and_then(|()| std::fs::rename(&part, &kept));
        if let Err(e) = keep {
            tracing::warn!("keeping a copy of {self} in {}: {e}", dir.display());
        }
    }
}

/// GETs `uri`, following redirects, and returns the body of its 200 response.
async fn download(mut uri: Uri, tls: Option<&TlsConnector>) -> anyhow::Result<String> {
    for _ in 0..=MAX_REDIRECTS {
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().context("no host")?.trim_matches(['[', ']']);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addr: SocketAddr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        let tcp = TcpStream::connect(addr).await?;
        let (status, location, body) = if https {
            let name = ServerName::try_from(host.to_owned())?;
            let tls = tls.context("no TLS settings for https lists")?;
            get(tls.connect(name, tcp).await?, &uri).await?
        } else {
            get(tcp, &uri).await?
        };
        match status {
            StatusCode::OK => {
                return String::from_utf8(body).map_err(|_| anyhow!("the list is not UTF-8"));
            }
            s if s.is_redirection() => {
                let to = location.with_context(|| format!("{s} without a Location"))?;
                uri = absolute(&uri, &to)?;
            }
            s => bail!("the server answered {s}"),
        }
    }
    bail!("more than {MAX_REDIRECTS} redirects")
}

/// One HTTP/1.1 GET over `io`: the status, the Location header and the body.
async fn get<T>(io: T, uri: &Uri) -> anyhow::Result<(StatusCode, Option<String>, Vec<u8>)>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().context("no host")?.as_str();
    let request = Request::get(path)
        .header(header::HOST, authority)
        .header(
            header::USER_AGENT,
            concat!("dnsxdp/", env!("CARGO_PKG_VERSION")),
        )
        .body(String::new())?;
    let mut response = send.send_request(request).await?;
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    let frames = response.body_mut();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut *frames).poll_frame(cx)).await
    {
        if let Ok(data) = frame?.into_data() {
            if body.len() + data.len() > MAX_LIST {
                bail!("the list is larger than {} MB", MAX_LIST >> 20);
            }
            body.extend_from_slice(&data);
        }
    }
    Ok((status, location, body))
}

/// `location` made absolute against `base`.
fn absolute(base: &Uri, location: &str) -> anyhow::Result<Uri> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(location.parse()?);
    }
    let authority = base.authority().context("no host")?;
    let scheme = base.scheme_str().unwrap_or("http");
    Ok(format!("{scheme}://{authority}{location}").parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_files_are_told_apart() {
        assert_eq!(
            Source::parse("/etc/dnsxdp/block.txt").unwrap(),
            Source::File("/etc/dnsxdp/block.txt".into())
        );
        let url = Source::parse("https://lists.example/hosts?x=1").unwrap();
        assert_eq!(url.to_string(), "https://lists.example/hosts?x=1");
        assert!(Source::parse("http://").is_err());
    }

    #[test]
    fn relative_redirects_keep_the_scheme_and_host() {
        let base: Uri = "https://lists.example:8443/a".parse().unwrap();
        assert_eq!(
            absolute(&base, "/b?c").unwrap().to_string(),
            "https://lists.example:8443/b?c"
        );
    }

    /// A download kept on disk is what the next start reads, before any network.
    #[tokio::test]
    async fn a_download_is_kept_for_the_next_start() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let (mut conn, _) = server.accept().await.unwrap();
            let mut buf = [0; 1024];
            let _ = conn.read(&mut buf).await.unwrap();
            let body = "0.0.0.0 ads.example\n";
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            conn.write_all(head.as_bytes()).await.unwrap();
            conn.write_all(body.as_bytes()).await.unwrap();
        });
        let dir = std::env::temp_dir().join(format!("dnsxdp-lists-{}", std::process::id()));
        let source = Source::parse(&format!("http://{addr}/hosts")).unwrap();
        assert!(source.last_good(&dir).is_err());
        let text = source.fetch(&dir, None).await.unwrap();
        assert_eq!(text, "0.0.0.0 ads.example\n");
        assert!(source.last_good(&dir).is_err(), "kept only when told");
        source.keep(&dir, &text);
        assert_eq!(source.last_good(&dir).unwrap().0, text);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
