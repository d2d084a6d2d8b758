//! dap-faultrun's peer over the Janus 0.7 crates (DAP-09) and prio 0.16 (VDAF-08).
//!
//! ```text
//! dap-faultrun-janus-peer client    --host 127.0.0.1 --port 8080   # interop Client API
//! dap-faultrun-janus-peer collector --host 127.0.0.1 --port 8080   # interop Collector API
//! dap-faultrun-janus-peer shard | prepare | unshard | check-prio3  # VDAF oracle, JSON stdin -> stdout
//! dap-faultrun-janus-peer bench SECONDS VARIANT...                 # prio 0.16 shard/prep rates
//! ```
//!
//! Written for dap-faultrun from the interop test design (draft-dcook-ppm-dap-interop-test-design-07)
//! and the crates' public APIs; see docs/images.md.

mod client;
mod collector;
mod http;
mod oracle;
mod vdafs;

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

const USAGE: &str = "usage: dap-faultrun-janus-peer client|collector [--host 127.0.0.1] --port PORT\n\
       dap-faultrun-janus-peer shard|prepare|unshard|check-prio3   (JSON on stdin)\n\
       dap-faultrun-janus-peer bench SECONDS VARIANT...";

fn listen_addr(args: &[String]) -> Result<SocketAddr, String> {
    let (mut host, mut port) = ("127.0.0.1".to_owned(), None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--host", Some(h)) => host = h.clone(),
            ("--port", Some(p)) => port = Some(p.parse::<u16>().map_err(|_| format!("--port: not a port: {p}"))?),
            _ => return Err(format!("bad argument {a}")),
        }
    }
    let port = port.ok_or("--port is required")?;
    format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("--host {host}: {e}"))
}

fn serve(role: &str, args: &[String]) -> Result<(), String> {
    let addr = listen_addr(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let result = match role {
            "client" => http::serve(addr, Arc::new(client::ClientApi::new()?), role).await,
            _ => http::serve(addr, Arc::new(collector::CollectorApi::new()?), role).await,
        };
        result.map_err(|e| format!("{addr}: {e}"))
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match command.as_str() {
        "client" | "collector" => serve(command, &args[1..]),
        "shard" | "prepare" | "unshard" | "check-prio3" => oracle::run(command).map(|out| println!("{out}")),
        "bench" => oracle::bench(&args[1..]),
        "-h" | "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dap-faultrun-janus-peer {command}: {e}");
            ExitCode::FAILURE
        }
    }
}
