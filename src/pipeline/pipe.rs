//! A bounded in-memory pipe between two threads. The writer blocks when
//! `capacity` chunks are in flight, so a slow reader slows the writer instead of
//! letting memory grow.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::CHUNK;

pub struct PipeWriter {
    tx: Option<SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
}

#[derive(Debug)]
pub struct PipeReader {
    rx: Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

/// A pipe holding at most `capacity` chunks of `CHUNK` bytes.
pub fn pipe(capacity: usize) -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(capacity);
    (
        PipeWriter {
            tx: Some(tx),
            buf: Vec::with_capacity(CHUNK),
        },
        PipeReader {
            rx,
            current: Vec::new(),
            pos: 0,
        },
    )
}

impl PipeWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.deliver(chunk)
    }

    fn deliver(&self, chunk: Vec<u8>) -> io::Result<()> {
        match &self.tx {
            Some(tx) => tx
                .send(chunk)
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reading side stopped")),
            None => Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe closed")),
        }
    }

    /// Hands `chunk` over whole, after anything buffered, without copying it.
    pub fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        self.send_buffer()?;
        self.deliver(chunk)
    }

    /// Sends what is buffered and closes the pipe: the reader sees end of stream.
    pub fn close(mut self) -> io::Result<()> {
        self.send_buffer()?;
        self.tx = None;
        Ok(())
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send_buffer()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                // The writer closed or went away: end of stream. Whether the writer
                // finished cleanly is decided by whoever joins the writing thread.
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_bytes_across_threads_in_order() {
        let (mut w, mut r) = pipe(2);
        let t = std::thread::spawn(move || {
            for i in 0..1000u32 {
                w.write_all(&i.to_le_bytes().repeat(100)).unwrap();
            }
            w.close().unwrap();
        });
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        t.join().unwrap();
        assert_eq!(all.len(), 1000 * 400);
        assert_eq!(&all[400 * 999..400 * 999 + 4], &999u32.to_le_bytes());
    }

    #[test]
    fn writer_fails_when_reader_is_gone() {
        let (mut w, r) = pipe(1);
        drop(r);
        let err = w.write_all(&vec![0; CHUNK * 3]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
