//! An instance's log: its file and the last lines of it.

use std::path::{Path, PathBuf};

use super::{Manager, ManagerError, Result};

impl Manager {
    /// The log file of an instance.
    pub fn log_file(&self, name: &str) -> Result<PathBuf> {
        let rec = self.get(name)?;
        Ok(self.spec(&rec).log_file())
    }

    /// The last `n` lines of an instance's log (reaching into the rotated
    /// file when the current one is short).
    pub fn log_tail(&self, name: &str, n: usize) -> Result<Vec<String>> {
        let path = self.log_file(name)?;
        let mut lines = tail_lines(&path, n).map_err(|source| ManagerError::Io {
            context: format!("cannot read {}", path.display()),
            source,
        })?;
        if lines.len() < n {
            let rotated = PathBuf::from(format!("{}.1", path.display()));
            if let Ok(mut older) = tail_lines(&rotated, n - lines.len()) {
                older.append(&mut lines);
                lines = older;
            }
        }
        Ok(lines)
    }
}

/// The last `n` lines of a text file, reading only its end.
pub fn tail_lines(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    use std::io::{Read, Seek, SeekFrom};
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut chunk = 8192u64;
    loop {
        let start = len.saturating_sub(chunk);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let mut lines: Vec<&str> = text.lines().collect();
        if start > 0 && lines.len() > n {
            let keep = lines.split_off(lines.len() - n);
            return Ok(keep.into_iter().map(str::to_string).collect());
        }
        if start == 0 {
            let skip = lines.len().saturating_sub(n);
            return Ok(lines.into_iter().skip(skip).map(str::to_string).collect());
        }
        chunk *= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn tail_reads_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            tail_lines(&path, 3).unwrap(),
            ["line 9997", "line 9998", "line 9999"]
        );
        assert_eq!(tail_lines(&path, 0).unwrap(), Vec::<String>::new());
        std::fs::write(&path, "a\nb\n").unwrap();
        assert_eq!(tail_lines(&path, 5).unwrap(), ["a", "b"]);
    }
}
