//! What a folder archive may hold before a restore writes any of it.
//!
//! cairn's own archives hold relative paths without `..`, regular files,
//! folders and symbolic links, each path once, nothing below a link, and an
//! optional `./` entry for the top folder. Anything else (a path leaving the
//! target, an absolute path, a hard link, a device node, a FIFO, a name no
//! file system holds) means the archive was made by someone else: the restore
//! stops and names the entry.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::Error;

/// Longest path and file name Linux accepts (`PATH_MAX`, `NAME_MAX`).
const MAX_PATH: usize = 4096;
const MAX_NAME: usize = 255;
/// Names in messages are cut to about this many characters.
const SHOWN_CHARS: usize = 200;

/// `bytes` as readable text: control characters and bytes that are not UTF-8
/// escaped (`\n`, `\u{1b}`, `\xff`), and cut in the middle when long.
pub fn shown(bytes: &[u8]) -> String {
    let mut text = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            text.extend(c.escape_debug());
        }
        for b in chunk.invalid() {
            text.push_str(&format!("\\x{b:02x}"));
        }
    }
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= SHOWN_CHARS {
        return format!("\"{text}\"");
    }
    let head: String = chars[..SHOWN_CHARS * 3 / 4].iter().collect();
    let tail: String = chars[chars.len() - SHOWN_CHARS / 4..].iter().collect();
    format!("\"{head}…{tail}\" ({} bytes)", bytes.len())
}

/// What an accepted entry is to the restorer.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    /// The `./` entry: the top folder's own mode and time.
    Top,
    /// Anything else, at this path below the target.
    Below(PathBuf),
}

#[derive(Default)]
pub struct Guard {
    links: HashSet<PathBuf>,
}

fn refuse(path: &[u8], problem: &str) -> Error {
    Error::Foreign(format!(
        "the archive's entry {} {problem}: this archive was not made by cairn, so nothing was restored (the target is untouched)",
        shown(path)
    ))
}

impl Guard {
    /// Checks one entry, in archive order.
    pub fn check(&mut self, path: &[u8], kind: tar::EntryType) -> crate::Result<Accepted> {
        use std::os::unix::ffi::OsStrExt;
        let allowed = matches!(
            kind,
            tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::Directory
                | tar::EntryType::Symlink
        );
        if !allowed {
            let what = match kind {
                tar::EntryType::Link => "is a hard link (cairn never stores hard links)",
                tar::EntryType::Char | tar::EntryType::Block => "is a device node",
                tar::EntryType::Fifo => "is a FIFO",
                _ => "has an entry type cairn never writes",
            };
            return Err(refuse(path, what));
        }
        if path.is_empty() {
            return Err(refuse(path, "has an empty name"));
        }
        if path.len() > MAX_PATH {
            return Err(refuse(
                path,
                &format!(
                    "has a path of {} bytes (longer than any file system allows)",
                    path.len()
                ),
            ));
        }
        if path.contains(&0) {
            return Err(refuse(path, "has a NUL byte in its name"));
        }
        if path.starts_with(b"/") {
            return Err(refuse(path, "has an absolute path"));
        }
        let mut relative = PathBuf::new();
        for part in path.split(|&b| b == b'/') {
            match part {
                b"" | b"." => continue,
                b".." => return Err(refuse(path, "leaves the target folder (`..`)")),
                name if name.len() > MAX_NAME => {
                    return Err(refuse(
                        path,
                        &format!(
                            "has a name of {} bytes (longer than any file system allows)",
                            name.len()
                        ),
                    ));
                }
                name => {
                    relative.push(std::ffi::OsStr::from_bytes(name));
                    if self.links.contains(&relative) {
                        return Err(refuse(
                            path,
                            "comes after a symbolic link of the same path or goes through one",
                        ));
                    }
                }
            }
        }
        if relative.as_os_str().is_empty() {
            return if kind == tar::EntryType::Directory {
                Ok(Accepted::Top)
            } else {
                Err(refuse(
                    path,
                    "names the target folder itself but is not a folder",
                ))
            };
        }
        if kind == tar::EntryType::Symlink {
            self.links.insert(relative.clone());
        }
        Ok(Accepted::Below(relative))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tar::EntryType::*;

    #[test]
    fn cairns_own_entries_pass() {
        let mut g = Guard::default();
        assert_eq!(g.check(b"./", Directory).unwrap(), Accepted::Top);
        assert_eq!(
            g.check(b"a/b.txt", Regular).unwrap(),
            Accepted::Below("a/b.txt".into())
        );
        assert!(g.check(b"a/link", Symlink).is_ok());
        assert!(g.check(b"a/linked", Regular).is_ok());
    }

    #[test]
    fn hostile_entries_are_refused_with_a_readable_name() {
        let cases: [(&[u8], tar::EntryType, &str); 7] = [
            (b"../escape.txt", Regular, "leaves the target"),
            (b"/etc/x", Regular, "absolute"),
            (b"a/../../x", Directory, "leaves the target"),
            (b"dev", Char, "device node"),
            (b"fifo", Fifo, "FIFO"),
            (b"hard", Link, "hard link"),
            (b"x\x1b[31m\xff", Fifo, "\\u{1b}[31m\\xff"),
        ];
        for (path, kind, needle) in cases {
            let e = Guard::default().check(path, kind).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
            assert!(e.contains("not made by cairn"), "{e}");
        }
        let mut g = Guard::default();
        g.check(b"link", Symlink).unwrap();
        assert!(
            g.check(b"link/file", Regular)
                .unwrap_err()
                .to_string()
                .contains("symbolic link")
        );
        let long = vec![b'a'; 20_000];
        let e = Guard::default()
            .check(&long, Regular)
            .unwrap_err()
            .to_string();
        assert!(e.len() < 600 && e.contains("20000 bytes"), "{e}");
    }
}
