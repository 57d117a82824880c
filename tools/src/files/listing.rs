//! Directory listings for the HTTP server: a plain HTML page of a
//! directory's entries, names escaped for HTML and for URLs. The directory
//! is read from the fd the request opened, and each entry looked at beneath
//! it (not following a link, as `ls -l`), so no path is resolved twice.

use super::safety::open_beneath;
use super::sys;
use std::ffi::CString;
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

fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A plain HTML listing of the directory open as `dir` (a fresh fd: reading
/// moves its offset), shown as `shown`.
pub(crate) fn listing(dir: &File, shown: &str) -> io::Result<String> {
    let mut entries: Vec<(String, bool, u64)> = sys::entries(dir.as_fd())?
        .into_iter()
        .map(|name| {
            let meta = CString::new(name.as_bytes())
                .ok()
                .and_then(|c| open_beneath(dir.as_fd(), &c, libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC).ok())
                .and_then(|fd| File::from(fd).metadata().ok());
            let is_dir = meta.as_ref().is_some_and(|m| m.is_dir());
            (name.to_string_lossy().into_owned(), is_dir, meta.map_or(0, |m| m.len()))
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
        let slash = if is_dir { "/" } else { "" };
        let size = if is_dir {
            String::new()
        } else {
            format!(" ({size} bytes)")
        };
        page.push_str(&format!(
            "<li><a href=\"{}{slash}\">{}{slash}</a>{size}</li>\n",
            url_escape(&name),
            html_escape(&name)
        ));
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
        std::fs::remove_dir_all(dir).unwrap();
    }
}
