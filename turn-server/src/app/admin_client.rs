//! `turn-server admin ...`: the operator's side of the admin interface (`ops::admin`). It finds
//! the relay and token from the flags or the same config file the relay runs with, and prints
//! tables for people or the server's JSON for scripts.

use std::process::ExitCode;

use anyhow::Context;
use ice_config::Config;
use serde_json::Value;

use crate::app::cli::{AdminAction, AdminArgs};

pub fn run(args: &AdminArgs) -> anyhow::Result<ExitCode> {
    let cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let base = args.url.clone().unwrap_or_else(|| {
        let addr = std::net::SocketAddr::new(cfg.turn.admin_address, cfg.turn.admin_port);
        format!("http://{addr}")
    });
    let token = args
        .token
        .clone()
        .or(cfg.turn.admin_token.clone())
        .context("no admin token: give --token (or TURN_ADMIN_TOKEN), or --config with turn.admin_token set")?;
    let base = base.trim_end_matches('/');
    let (method, path) = match &args.action {
        AdminAction::List { user: None } => (reqwest::Method::GET, "/allocations".to_owned()),
        AdminAction::List { user: Some(u) } => (reqwest::Method::GET, format!("/allocations?user={}", encode(u))),
        AdminAction::Drop { user } => (reqwest::Method::DELETE, format!("/users/{}/allocations", encode(user))),
        AdminAction::Config => (reqwest::Method::GET, "/config".to_owned()),
        AdminAction::Reload => (reqwest::Method::POST, "/reload".to_owned()),
    };
    let url = format!("{base}{path}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, body) = runtime.block_on(async {
        let response = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?
            .request(method, &url)
            .bearer_auth(&token)
            .send()
            .await
            .with_context(|| format!("cannot reach the admin interface at {url} (is admin_token set on the relay?)"))?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::Ok((status, text))
    })?;
    let value: Value = serde_json::from_str(&body).with_context(|| format!("{url}: {status}: not JSON: {body}"))?;
    if !status.is_success() {
        let error = value["error"].as_str().unwrap_or(&body);
        anyhow::bail!("{url}: {status}: {error}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &args.action {
        AdminAction::List { .. } => print_allocations(&value),
        AdminAction::Drop { user } => println!("dropped {} allocation(s) of {user}", value["dropped"]),
        AdminAction::Config => {
            println!(
                "turn-server {}: {} allocation(s){}\n",
                value["version"].as_str().unwrap_or("?"),
                value["allocations"],
                if value["draining"].as_bool() == Some(true) { ", draining" } else { "" }
            );
            print!("{}", value["config"].as_str().unwrap_or_default());
        }
        AdminAction::Reload => {
            println!("configuration reloaded");
            if let Some(list) = value["needs_restart"].as_array().filter(|l| !l.is_empty()) {
                let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
                println!("these changes need a restart: {}", names.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_allocations(value: &Value) {
    let empty = Vec::new();
    let list = value["allocations"].as_array().unwrap_or(&empty);
    println!(
        "{:<20} {:<4} {:<24} {:<24} {:>7} {:>7} {:>12} {:>12}",
        "USER", "VIA", "CLIENT", "RELAYED", "AGE", "EXPIRES", "TO PEER", "FROM PEER"
    );
    for a in list {
        let relayed: Vec<&str> = a["relayed"].as_array().unwrap_or(&empty).iter().filter_map(Value::as_str).collect();
        let user = a["user"].as_str().unwrap_or("?");
        println!(
            "{:<20} {:<4} {:<24} {:<24} {:>6}s {:>6}s {:>12} {:>12}",
            user,
            a["transport"].as_str().unwrap_or("?"),
            a["client"].as_str().unwrap_or("?"),
            relayed.join(","),
            a["age_secs"],
            a["expires_in_secs"],
            format!("{} B", a["bytes_to_peer"]),
            format!("{} B", a["bytes_from_peer"]),
        );
    }
    println!("{} allocation(s)", list.len());
}

/// Percent-encodes a path segment or query value (user ids may hold `:` or `@`).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
