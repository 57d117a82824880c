//! Which paths may be served: regular files (and, for listings, directories)
//! under the root, after decoding, with no way out: `..`, absolute paths,
//! encoded traversal and symlinks that leave the root are all refused.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a request gets no file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Nothing there (404).
    NotFound,
    /// There, but not to be served (403): outside the root, not a regular file, ...
    Forbidden(String),
}

/// A served directory.
#[derive(Clone, Debug)]
pub struct Root {
    canonical: PathBuf,
}

/// What a request resolved to.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// A regular file.
    File(PathBuf),
    /// A directory (for HTTP listings).
    Dir(PathBuf),
}

/// Decodes `%XX` escapes; `None` on a malformed escape or a decoded NUL.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

impl Root {
    /// The directory `dir`, which must exist.
    pub fn new(dir: &Path) -> io::Result<Root> {
        let canonical = dir
            .canonicalize()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot serve {}: {e}", dir.display())))?;
        if !canonical.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(Root { canonical })
    }

    /// The root itself.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Resolves a decoded request path (`/a/b.txt` or `a/b.txt`).
    pub fn resolve(&self, name: &str) -> Result<Target, Denied> {
        let rel = name.trim_start_matches('/');
        let mut joined = self.canonical.clone();
        for c in Path::new(rel).components() {
            match c {
                Component::Normal(part) => joined.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(Denied::Forbidden(
                        format!("{name:?} climbs out with ..").replace('\n', " "),
                    ));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(Denied::Forbidden(format!("{name:?} is absolute")));
                }
            }
        }
        let real = match joined.canonicalize() {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Whether something is missing outside the root is none of the
                // client's business: if the deepest existing ancestor already
                // lies outside (through a link), the answer is "forbidden".
                let mut probe = joined.as_path();
                while let Some(parent) = probe.parent() {
                    if let Ok(real) = parent.canonicalize() {
                        if !real.starts_with(&self.canonical) {
                            return Err(Denied::Forbidden(format!(
                                "{name:?} leads outside the served directory"
                            )));
                        }
                        break;
                    }
                    probe = parent;
                }
                // A dangling symlink is still a symlink: say whether it would leave.
                return match std::fs::symlink_metadata(&joined) {
                    Ok(_) => Err(Denied::Forbidden(format!("{name:?} is a broken link"))),
                    Err(_) => Err(Denied::NotFound),
                };
            }
            Err(e) => return Err(Denied::Forbidden(format!("{name:?}: {e}"))),
        };
        if !real.starts_with(&self.canonical) {
            return Err(Denied::Forbidden(format!(
                "{name:?} leads outside the served directory"
            )));
        }
        let meta = std::fs::metadata(&real).map_err(|_| Denied::NotFound)?;
        if meta.is_file() {
            Ok(Target::File(real))
        } else if meta.is_dir() {
            Ok(Target::Dir(real))
        } else {
            Err(Denied::Forbidden(format!("{name:?} is not a regular file")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (PathBuf, Root) {
        let base = std::env::temp_dir().join(format!(
            "tunstack-safety-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("root/sub")).unwrap();
        std::fs::write(base.join("root/hello.txt"), b"hi").unwrap();
        std::fs::write(base.join("root/sub/inner.txt"), b"in").unwrap();
        std::fs::write(base.join("secret.txt"), b"no").unwrap();
        std::os::unix::fs::symlink(base.join("secret.txt"), base.join("root/escape")).unwrap();
        std::os::unix::fs::symlink(base.join("root/hello.txt"), base.join("root/inside")).unwrap();
        let root = Root::new(&base.join("root")).unwrap();
        (base, root)
    }

    #[test]
    fn files_inside_are_served_and_nothing_outside() {
        let (base, r) = setup();
        assert!(matches!(r.resolve("/hello.txt"), Ok(Target::File(_))));
        assert!(matches!(r.resolve("sub/inner.txt"), Ok(Target::File(_))));
        assert!(matches!(r.resolve("/sub"), Ok(Target::Dir(_))));
        assert!(
            matches!(r.resolve("/inside"), Ok(Target::File(_))),
            "a link that stays inside is fine"
        );
        assert_eq!(r.resolve("/missing"), Err(Denied::NotFound));
        // Through a link to a directory outside, even missing names are forbidden (no probing).
        std::os::unix::fs::symlink(&base, base.join("root/outside")).unwrap();
        assert!(matches!(r.resolve("/outside/no-such-file"), Err(Denied::Forbidden(_))));
        assert!(matches!(r.resolve("/outside/secret.txt"), Err(Denied::Forbidden(_))));
        for bad in ["/../secret.txt", "../secret.txt", "sub/../../secret.txt", "/escape"] {
            assert!(matches!(r.resolve(bad), Err(Denied::Forbidden(_))), "{bad}");
        }
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn percent_decoding_catches_encoded_traversal_and_nul() {
        assert_eq!(percent_decode("/%2e%2e/etc/passwd").as_deref(), Some("/../etc/passwd"));
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("nul%00"), None);
        assert_eq!(percent_decode("%zz"), None);
    }
}
