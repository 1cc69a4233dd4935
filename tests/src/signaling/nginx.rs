//! A real nginx in front of the service, run from a generated config, never /etc/nginx.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{require, MAX_LIFE};
use crate::process::{self, ChildGuard};
use crate::tail;

/// A real nginx in the foreground with a generated config in `dir` (never /etc/nginx).
pub struct Nginx {
    child: ChildGuard,
    pub port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx with `site` (a server block and what it needs at http level) included.
    pub fn start(dir: &Path, site: &str, port: u16) -> Self {
        Self::start_with(dir, "", site, port)
    }

    /// As [`start`](Self::start), with `main` (e.g. `load_module ...;`) at the top of the main
    /// config, where nginx requires `load_module`.
    pub fn start_with(dir: &Path, main: &str, site: &str, port: u16) -> Self {
        let bin = require("nginx", "apt-get install -y nginx");
        let root = dir.join("nginx");
        for sub in ["logs", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"] {
            std::fs::create_dir_all(root.join(sub)).expect("nginx dirs");
        }
        let r = root.display();
        let conf = format!(
            "{main}\ndaemon off;\nmaster_process off;\nworker_processes 1;\npid {r}/nginx.pid;\nerror_log {r}/logs/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {r}/logs/access.log;\n  client_body_temp_path {r}/tmp/body;\n  proxy_temp_path {r}/tmp/proxy;\n  \
             fastcgi_temp_path {r}/tmp/fastcgi;\n  uwsgi_temp_path {r}/tmp/uwsgi;\n  scgi_temp_path {r}/tmp/scgi;\n\n{site}\n}}\n"
        );
        let conf_path = root.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        // -e: the startup error log too goes to the temp dir, not nginx's compiled-in path.
        let args: Vec<String> = vec![
            "-p".into(),
            root.display().to_string(),
            "-c".into(),
            conf_path.display().to_string(),
            "-e".into(),
            root.join("logs").join("startup-error.log").display().to_string(),
        ];
        // nginx -t first: a config error is reported as such, not as "did not start".
        let check =
            process::run("nginx-t", &bin, &[args.clone(), vec!["-t".into()]].concat(), dir, Duration::from_secs(10));
        assert!(check.success(), "nginx -t refused the generated config:\n{}{}", check.stdout, check.stderr);
        let mut child = process::spawn("nginx", &bin, &args, dir, MAX_LIFE);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(status) = child.exited() {
                panic!("nginx exited ({status}): {}", tail(&child.stderr(), 20));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { child, port, dir: root };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx did not listen on {port}");
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs").join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.child.stop();
        if std::thread::panicking() {
            eprintln!("--- nginx error.log:\n{}\n---", tail(&self.error_log(), 40));
        }
    }
}
