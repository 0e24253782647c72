//! Deterministic test content: the static-serving files and the 1,000-file
//! site of the deploy benchmark. The same seed always gives the same bytes.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

/// SplitMix64: tiny, fast, and good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// `1k.bin` (1,024 bytes) and `100k.bin` (102,400 bytes) of random,
/// incompressible bytes: no precompressed variant exists, so both servers
/// send exactly these bytes.
pub fn static_files(dir: &Path, seed: u64) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    write(&dir.join("1k.bin"), &rng.bytes(1024))?;
    write(&dir.join("100k.bin"), &rng.bytes(100 * 1024))?;
    write(&dir.join("index.html"), b"<!doctype html><title>bench</title>\n")
}

/// A site of `files` files and about `total` bytes: 40 % HTML, 20 % CSS,
/// 20 % JS (compressible text made of pseudo-words) and 20 % images and
/// fonts (random bytes), in nested directories. Returns the bytes written.
pub fn site(dir: &Path, files: usize, total: u64, seed: u64) -> anyhow::Result<u64> {
    let mut rng = Rng::new(seed);
    let words: Vec<String> = (0..400).map(|_| word(&mut rng)).collect();
    // Average sizes per kind at the default 1,000 files / 20 MB:
    // html 9 KB, css 12 KB, js 24 KB, binary 46 KB; scaled to `total`.
    let per_cycle = 2.0 * 9.0 + 12.0 + 24.0 + 46.0;
    let scale = total as f64 / (files as f64 / 5.0 * per_cycle * 1000.0);
    let avg = |kb: f64| (kb * 1000.0 * scale) as usize;
    let mut written = 0u64;
    for i in 0..files {
        let (path, bytes) = match i % 5 {
            _ if i == 0 => ("index.html".to_owned(), html(&mut rng, &words, avg(9.0))),
            0 | 1 => (format!("pages/{:02}/page-{i:04}.html", i % 37), html(&mut rng, &words, avg(9.0))),
            2 => (format!("assets/css/style-{i:04}.css"), css(&mut rng, &words, avg(12.0))),
            3 => (format!("assets/js/chunk-{i:04}.js"), js(&mut rng, &words, avg(24.0))),
            _ => {
                let ext = ["png", "jpg", "webp", "woff2"][(i / 5) % 4];
                let n = rng.range(avg(46.0) / 2, avg(46.0) * 3 / 2);
                (format!("media/{:02}/asset-{i:04}.{ext}", i % 23), rng.bytes(n))
            }
        };
        written += bytes.len() as u64;
        write(&dir.join(path), &bytes)?;
    }
    Ok(written)
}

fn word(rng: &mut Rng) -> String {
    const SYL: &[&str] = &[
        "ka", "lo", "mi", "ne", "ru", "sta", "ven", "tor", "pel", "qui", "dra", "men", "so", "lin", "ar", "ex", "ti",
        "bo", "gar", "hel", "ix", "un", "zo", "per",
    ];
    (0..rng.range(1, 4)).map(|_| SYL[rng.range(0, SYL.len())]).collect()
}

fn sentence(rng: &mut Rng, words: &[String], out: &mut String) {
    for j in 0..rng.range(6, 18) {
        if j > 0 {
            out.push(' ');
        }
        out.push_str(&words[rng.range(0, words.len())]);
    }
    out.push_str(". ");
}

/// Text of about `avg` bytes (±50 %), built by `chunk` until long enough.
fn text(rng: &mut Rng, avg: usize, mut chunk: impl FnMut(&mut Rng, &mut String)) -> Vec<u8> {
    let target = rng.range(avg / 2, avg * 3 / 2);
    let mut s = String::with_capacity(target + 512);
    while s.len() < target {
        chunk(rng, &mut s);
    }
    s.truncate(target);
    s.into_bytes()
}

fn html(rng: &mut Rng, words: &[String], avg: usize) -> Vec<u8> {
    let mut first = true;
    text(rng, avg, |rng, s| {
        if first {
            s.push_str("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>");
            sentence(rng, words, s);
            s.push_str("</title><link rel=\"stylesheet\" href=\"/assets/css/site.css\"></head>\n<body>\n");
            first = false;
        }
        let _ = write!(s, "<section class=\"s{}\"><h2>", rng.range(0, 50));
        sentence(rng, words, s);
        s.push_str("</h2>\n<p>");
        for _ in 0..rng.range(2, 6) {
            sentence(rng, words, s);
        }
        s.push_str("</p></section>\n");
    })
}

fn css(rng: &mut Rng, words: &[String], avg: usize) -> Vec<u8> {
    text(rng, avg, |rng, s| {
        let name = &words[rng.range(0, words.len())];
        let _ = writeln!(
            s,
            ".{name}-{} {{ color: #{:06x}; margin: {}px {}px; display: {}; }}",
            rng.range(0, 100),
            rng.next_u64() & 0xff_ffff,
            rng.range(0, 32),
            rng.range(0, 32),
            ["block", "flex", "grid", "inline"][rng.range(0, 4)]
        );
    })
}

fn js(rng: &mut Rng, words: &[String], avg: usize) -> Vec<u8> {
    text(rng, avg, |rng, s| {
        let (a, b) = (&words[rng.range(0, words.len())], &words[rng.range(0, words.len())]);
        let _ = writeln!(
            s,
            "export function {a}_{}({b}, n) {{ const k = {}; return {b}.map((x) => x * k + n).filter(Boolean); }}",
            rng.range(0, 1000),
            rng.range(0, 100_000)
        );
    })
}
