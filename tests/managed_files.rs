//! `files:` with the config as the source of truth: a changed content and a reload reach
//! the service (with its reload signal where it declares one, else through a restart), a
//! file readable by its workers is 0644, and a hand edit is left alone and shown.
#![allow(clippy::unwrap_used)]

mod support;

use nix::sys::signal::Signal;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use support::*;

fn body(port: u16, path: &str) -> Option<String> {
    http().get(format!("http://127.0.0.1:{port}{path}")).send().ok()?.text().ok()
}

fn config(http_port: u16, web: u16, hup: u16, page: &str, message: &str) -> String {
    // `hup` reads its message at start and again on SIGHUP, as nginx reads its config.
    let hup_server = format!(
        "import signal, http.server as h\\nP='{{d}}/services/hup/message.txt'\\nM=[open(P).read()]\\ndef r(*a): M[0]=open(P).read()\\nsignal.signal(signal.SIGHUP, r)\\nclass H(h.BaseHTTPRequestHandler):\\n  def do_GET(s):\\n    b=M[0].encode(); s.send_response(200); s.send_header('content-length', str(len(b))); s.end_headers(); s.wfile.write(b)\\nh.ThreadingHTTPServer(('127.0.0.1', {hup}), H).serve_forever()"
    );
    format!(
        "node:\n  name: t\n  http_listen: 127.0.0.1:{http_port}\nservices:\n  - name: web\n    command: python3\n    args: [-m, http.server, '{web}', --bind, 127.0.0.1, --directory, '${{data_dir}}/services/web/site']\n    ports: [{web}]\n    ready: {{ kind: tcp, addr: '127.0.0.1:{web}' }}\n    files:\n      - {{ path: '${{data_dir}}/services/web/site/index.html', content: '{page}' }}\n  - name: hup\n    command: python3\n    args: [-c, \"{}\"]\n    ports: [{hup}]\n    ready: {{ kind: tcp, addr: '127.0.0.1:{hup}' }}\n    signals: {{ reload: SIGHUP }}\n    files:\n      - {{ path: '${{data_dir}}/services/hup/message.txt', content: '{message}' }}\n",
        hup_server.replace("{d}", "${data_dir}"),
    )
}

#[test]
fn test_a_changed_file_in_the_config_reaches_the_service_and_a_hand_edit_is_kept() {
    let ports = Ports::fresh();
    let (web, hup) = (ports.api, ports.model);
    let mut node = Node::prepare(&config(ports.http, web, hup, "one", "alpha"), ports);
    node.spawn(&[]);
    wait_until("web serves the config's page", Duration::from_secs(30), || body(web, "/").as_deref() == Some("one"));
    wait_until("hup serves its message", Duration::from_secs(30), || body(hup, "/").as_deref() == Some("alpha"));
    let page = node.data_dir().join("services/web/site/index.html");
    assert_eq!(std::fs::metadata(&page).unwrap().permissions().mode() & 0o777, 0o644, "readable by workers");
    let hup_pid = node.service("hup").and_then(|(p, _)| p).unwrap();

    // Both changed in the config, then a reload.
    let written = std::fs::read_to_string(node.config_path()).unwrap();
    let changed = written.replace("content: 'one'", "content: 'two'").replace("content: 'alpha'", "content: 'beta'");
    std::fs::write(node.config_path(), changed).unwrap();
    kill(node.pid(), Signal::SIGHUP);
    wait_until("web serves the new page", Duration::from_secs(30), || body(web, "/").as_deref() == Some("two"));
    wait_until("hup serves the new message", Duration::from_secs(30), || body(hup, "/").as_deref() == Some("beta"));
    assert_eq!(node.service("hup").and_then(|(p, _)| p), Some(hup_pid), "its reload signal, not a restart");

    // Someone fixes the page by hand; the config changes meanwhile: the edit stays.
    std::fs::write(&page, "by hand").unwrap();
    let written = std::fs::read_to_string(node.config_path()).unwrap();
    std::fs::write(node.config_path(), written.replace("content: 'two'", "content: 'three'")).unwrap();
    kill(node.pid(), Signal::SIGHUP);
    wait_until("the edit is shown", Duration::from_secs(30), || {
        node.status().is_some_and(|s| {
            s["services"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| v["name"] == "web" && v["edited_files"].as_array().is_some_and(|f| !f.is_empty()))
        })
    });
    assert_eq!(std::fs::read_to_string(&page).unwrap(), "by hand", "not overwritten");
    assert!(node.stop().unwrap().success(), "{}", node.stderr());
}
