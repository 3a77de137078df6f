// java -cp /usr/share/java/postgresql.jar Jdbc.java   (QUOTA_TCP_HOST, PGPORT, PGDATABASE, PGUSER)
import java.sql.*;
import org.postgresql.util.PSQLException;

public class Jdbc {
    public static void main(String[] args) throws SQLException {
        String url = "jdbc:postgresql://" + System.getenv("QUOTA_TCP_HOST") + ":" + System.getenv("PGPORT") + "/" + System.getenv("PGDATABASE");
        try (Connection c = DriverManager.getConnection(url, System.getenv("PGUSER"), "");
             PreparedStatement ps = c.prepareStatement("SELECT * FROM quota.quota_consume(?, ?, ?)")) {
            ps.setString(1, "snippet-user"); ps.setString(2, "messages"); ps.setLong(3, 1);
            for (int i = 1; i <= 3; i++) {
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    System.out.println("consume " + i + ": used " + rs.getLong("used") + ", remaining " + rs.getLong("remaining"));
                } catch (PSQLException e) {
                    if (i < 3 || !"QT429".equals(e.getSQLState())) throw e;
                    System.out.println("QT429, DETAIL: " + e.getServerErrorMessage().getDetail());  // one JSON object
                    return;  // exit 0: the third consume was refused
                }
            }
        }
        System.exit(1);
    }
}
