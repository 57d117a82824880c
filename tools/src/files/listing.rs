//! Directory listings for the HTTP server: a plain HTML page of a
//! directory's entries, names escaped for HTML and for URLs. The directory
//! is read from the fd the request opened, and each entry looked at beneath
//! it (not following a link, as `ls -l`), so no path is resolved twice;
//! at most [`MAX_LISTED`] entries are shown.

use super::sys;
use std::ffi::CString;
use std::fmt::Write;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `s` percent-encoded for a URL path: unreserved bytes and `/` stay.
pub(crate) fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Most entries a listing shows: the first the directory gives, sorted,
/// then a line saying how many more there are. This bounds a listing's
/// time and memory however large the directory.
pub(crate) const MAX_LISTED: usize = 10_000;

/// A plain HTML listing of the directory open as `dir` (a fresh fd: reading
/// moves its offset), shown as `shown`. Entries are looked at with
/// `fstatat` beneath it (a link as itself, as `ls -l`), none opened.
pub(crate) fn listing(dir: &File, shown: &str) -> io::Result<String> {
    let (names, more) = sys::entries(dir.as_fd(), MAX_LISTED)?;
    let mut entries: Vec<(String, bool, u64)> = names
        .into_iter()
        .map(|(name, kind)| {
            let stat = || {
                CString::new(name.as_bytes())
                    .ok()
                    .and_then(|c| sys::stat_at(dir.as_fd(), &c).ok())
            };
            let (is_dir, size) = match kind {
                libc::DT_DIR => (true, 0),
                _ => stat().map_or((false, 0), |st| {
                    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                    (is_dir, u64::try_from(st.st_size).unwrap_or(0))
                }),
            };
            (name.to_string_lossy().into_owned(), is_dir, size)
        })
        .collect();
    entries.sort();
    let title = html_escape(shown);
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n"
    );
    if shown != "/" {
        page.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for (name, is_dir, size) in entries {
        let (href, name) = (url_escape(&name), html_escape(&name));
        // Writing to a String cannot fail.
        let _ = if is_dir {
            writeln!(page, "<li><a href=\"{href}/\">{name}/</a></li>")
        } else {
            writeln!(page, "<li><a href=\"{href}\">{name}</a> ({size} bytes)</li>")
        };
    }
    if more > 0 {
        let _ = writeln!(page, "<li>\u{2026} {more} more not shown</li>");
    }
    page.push_str("</ul></body></html>\n");
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_escape_names() {
        let dir = std::env::temp_dir().join(format!("tunstack-listing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a <b>.txt"), b"x").unwrap();
        let page = listing(&File::open(&dir).unwrap(), "/").unwrap();
        assert!(
            page.contains("href=\"a%20%3Cb%3E.txt\">a &lt;b&gt;.txt</a> (1 bytes)"),
            "{page}"
        );
        assert!(page.contains("href=\"sub/\">sub/</a>"));
        // A link is shown as itself (fstatat, not following it), as ls -l does.
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
        let page = listing(&File::open(&dir).unwrap(), "/").unwrap();
        assert!(page.contains("href=\"link\">link</a> (11 bytes)"), "{page}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_huge_directory_shows_its_cap_and_how_many_more() {
        let dir = std::env::temp_dir().join(format!("tunstack-listing-huge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..MAX_LISTED + 5 {
            std::fs::write(dir.join(format!("f{i:05}")), b"abc").unwrap();
        }
        let page = listing(&File::open(&dir).unwrap(), "/big/").unwrap();
        let shown = page
            .lines()
            .filter(|l| l.starts_with("<li><a href=\"") && !l.contains("../"))
            .count();
        assert_eq!(shown, MAX_LISTED);
        assert!(
            page.contains("<li>\u{2026} 5 more not shown</li>\n</ul>"),
            "{}",
            &page[page.len() - 200..]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
