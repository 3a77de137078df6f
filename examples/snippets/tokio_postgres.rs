use tokio_postgres::{error::SqlState, NoTls};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), tokio_postgres::Error> {
    let dsn = std::env::var("DATABASE_URL").expect("DATABASE_URL"); // "host=... user=... dbname=..."
    let (client, conn) = tokio_postgres::connect(&dsn, NoTls).await?;
    tokio::spawn(conn);
    let consume = "SELECT used, remaining FROM quota.quota_consume($1, $2, $3)";
    for _ in 0..3 {
        match client.query_one(consume, &[&"snippet-user", &"messages", &1i64]).await {
            Ok(row) => println!("used {}, remaining {}", row.get::<_, i64>("used"), row.get::<_, i64>("remaining")),
            Err(e) if e.code() == Some(&SqlState::from_code("QT429")) => {
                let detail: serde_json::Value = serde_json::from_str(e.as_db_error().unwrap().detail().unwrap()).unwrap();
                println!("refused until {}", detail["reset_at"]);  // HTTP 429, Retry-After
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    panic!("the third consume was not refused");
}
