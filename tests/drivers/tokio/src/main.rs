//! Prepares every quota function at every arity (tests/drivers/calls.sql reads them from
//! pg_proc) with tokio-postgres, which sends no parameter types when given none: the
//! server must resolve each call alone. Connects with PGHOST, PGPORT, PGUSER, PGDATABASE.
//! Prints the calls that do not resolve and exits 1 if there is one.

use std::env;

const CALLS: &str = include_str!("../../calls.sql");

pub fn config() -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host(&env::var("PGHOST").unwrap_or_else(|_| "/tmp".into()))
        .port(env::var("PGPORT").ok().and_then(|p| p.parse().ok()).unwrap_or(5432))
        .user(&env::var("PGUSER").unwrap_or_else(|_| "postgres".into()))
        .dbname(&env::var("PGDATABASE").unwrap_or_else(|_| "postgres".into()));
    c
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (client, connection) = config().connect(tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let calls = client.query(CALLS, &[]).await.expect("calls.sql");
    let mut failed = 0;
    for row in &calls {
        let call: String = row.get("call");
        if let Err(e) = client.prepare(&call).await {
            let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
            println!("tokio-postgres: {call}: {code} {}", e.as_db_error().map(|d| d.message()).unwrap_or(""));
            failed += 1;
        }
    }
    println!("tokio-postgres: {} of {} calls resolve", calls.len() - failed, calls.len());
    std::process::exit(if failed > 0 || calls.is_empty() { 1 } else { 0 });
}
