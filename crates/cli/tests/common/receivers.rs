//! Real receivers for the real-time tests: an HTTP/1.1 server (webhooks, Splunk HEC, OCSF over
//! HTTP) and a TCP syslog listener (RFC 6587 octet counting), each on 127.0.0.1, recording what
//! arrives. An HTTP receiver can be taken down (it answers 503) and brought back.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status the receiver answered.
    pub status: u16,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

type Judge = dyn Fn(&Request) -> u16 + Send + Sync;

/// An HTTP receiver: `judge` decides each request's status while it is up; down, it answers 503.
pub struct HttpReceiver {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    down: Arc<AtomicBool>,
}

impl HttpReceiver {
    pub fn start(judge: impl Fn(&Request) -> u16 + Send + Sync + 'static) -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let judge: Arc<Judge> = Arc::new(judge);
        let (shared, is_down) = (requests.clone(), down.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (shared, is_down, judge) = (shared.clone(), is_down.clone(), judge.clone());
                std::thread::spawn(move || serve(stream, &shared, &is_down, &*judge));
            }
        });
        HttpReceiver {
            url,
            requests,
            down,
        }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests it accepted (2xx), in arrival order.
    pub fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|request| (200..300).contains(&request.status))
            .collect()
    }
}

fn serve(stream: TcpStream, requests: &Mutex<Vec<Request>>, down: &AtomicBool, judge: &Judge) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let length = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut request = Request {
            path,
            headers,
            body,
            status: 503,
        };
        if !down.load(Ordering::SeqCst) {
            request.status = judge(&request);
        }
        let status = request.status;
        requests.lock().unwrap().push(request);
        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A TCP syslog listener: every octet-counted frame received, in order.
pub struct SyslogReceiver {
    pub address: String,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl SyslogReceiver {
    pub fn start() -> SyslogReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let shared = frames.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 65_536];
                    loop {
                        let read = stream.read(&mut chunk).unwrap_or(0);
                        if read == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..read]);
                        while let Some((used, message)) =
                            sealtrail_realtime::syslog::parse_octet_counted(&buffer)
                        {
                            shared.lock().unwrap().push(message.to_vec());
                            buffer.drain(..used);
                        }
                    }
                });
            }
        });
        SyslogReceiver { address, frames }
    }

    pub fn frames(&self) -> Vec<Vec<u8>> {
        self.frames.lock().unwrap().clone()
    }
}

pub use crate::common::wait_until;
