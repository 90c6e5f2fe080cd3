//! What the benchmarks' reference servers (`http_ceiling`, `durable_ceiling`) share.

use axum::Router;

/// Serves `app` on `addr` (`127.0.0.1:0` picks a free port): prints the address bound and,
/// when `addr_file` is given, writes it there as `{"http":"ADDR"}` (the form `bench/` reads
/// from `statemanager serve --addr-file`).
pub async fn serve(addr: &str, addr_file: Option<String>, app: Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    println!("{local}");
    if let Some(file) = addr_file {
        std::fs::write(file, format!("{{\"http\":\"{local}\"}}"))?;
    }
    axum::serve(listener, app).await
}
