import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.OffsetDateTime;
import java.util.Map;
import java.util.Properties;

import org.postgresql.util.PSQLException;
import org.postgresql.util.ServerErrorMessage;

/**
 * Seed 001's QuotaService and SubscriptionService, with the bookkeeping moved into
 * PostgreSQL: quota_ext holds the plans, the subscriptions (quota.subjects), the windows
 * (a new day or month is a new counter row, so nothing is reset by the app) and the row
 * locks. Unknown users join the FREE plan on their first consume because the app's role
 * has quota.default_plan = 'FREE' (ALTER ROLE ... SET, done by a superuser).
 */
public final class QuotaService {

    /** A request the database refused for a reason other than a quota (HTTP 400/404/500). */
    public static final class RequestException extends Exception {
        private static final long serialVersionUID = 1L;
        public final int status;
        public final String sqlState;
        RequestException(int status, String sqlState, String message) {
            super(message);
            this.status = status;
            this.sqlState = sqlState;
        }
    }

    /** What quota_check / quota_consume answered for one metric. */
    public record Decision(String metric, boolean allowed, long used, long limit, long remaining,
                           long requested, String resetAt) { }

    /** Seed 001's SubscriptionStatusDTO, from quota.quota_status. */
    public record SubscriptionStatus(String planName, long tokensRemainingThisMonth, long messagesRemainingToday,
                                     Long perMessageTokenLimit, long monthlyTokenLimit, long dailyMessageLimit,
                                     long tokensUsedThisMonth, long messagesSentToday,
                                     String monthlyResetDate, String dailyResetDate) { }

    /** Usage recorded after a model call. */
    public record Usage(Decision tokens, Decision messages) { }

    // The single-metric forms; SELECT * FROM gives typed columns (SELECT quota.quota_consume(...)
    // would give one composite column that JDBC returns as a string).
    private static final String CONSUME = "SELECT * FROM quota.quota_consume(?, ?, ?)";
    private static final String CHECK =
            "SELECT * FROM quota.quota_check(?, 'tokens', 1) UNION ALL SELECT * FROM quota.quota_check(?, 'messages', 1)";
    private static final String STATUS =
            "SELECT s.metric, s.limit_value, s.bonus, s.used, s.reserved, s.remaining, s.reset_at, "
            + "       p.plan, l.per_request_max "
            + "FROM quota.quota_status(?) s "
            + "CROSS JOIN LATERAL (SELECT coalesce((SELECT plan FROM quota.subjects WHERE subject = ?), "
            + "                                    current_setting('quota.default_plan', true)) AS plan) p "
            + "LEFT JOIN quota.plan_limits l ON l.plan = p.plan AND l.metric = s.metric "
            // quota_ext 0.8.0: a member of a pool also gets its pools' rows (level 1 and up).
            + "WHERE s.level = 0";

    private final String url;
    private final Properties props = new Properties();
    // One connection per worker thread of the HTTP server: a pool in six lines.
    private final ThreadLocal<Connection> connections = new ThreadLocal<>();

    public QuotaService(String url, String user) {
        this.url = url;
        props.setProperty("user", user);
        props.setProperty("ApplicationName", "quota_ext java example");
    }

    private Connection connection() throws SQLException {
        Connection c = connections.get();
        if (c == null || c.isClosed()) {
            c = DriverManager.getConnection(url, props);
            connections.set(c);
        }
        return c;
    }

    /** Before the LLM call (seed: checkQuotaBeforeCall): one more token and one more message must fit. */
    public Map<String, Decision> checkQuotaBeforeCall(String userId) throws QuotaExceededException, RequestException {
        try (PreparedStatement ps = connection().prepareStatement(CHECK)) {
            ps.setString(1, userId);
            ps.setString(2, userId);
            Decision tokens = null, messages = null;
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    Decision d = decision(rs);
                    if (d.metric().equals("tokens")) tokens = d; else messages = d;
                }
            }
            // Same order as the seed: the monthly tokens first, then the daily messages.
            for (Decision d : new Decision[] {tokens, messages}) {
                if (!d.allowed()) {
                    throw new QuotaExceededException(QuotaType.ofMetric(d.metric()), d.limit(), d.used(),
                            d.requested(), d.resetAt(), null);
                }
            }
            return Map.of("tokens", tokens, "messages", messages);
        } catch (SQLException e) {
            throw orQuotaError(e);
        }
    }

    /**
     * After the LLM call (seed: recordUsage): input + output tokens and one message, in one
     * transaction: both count or neither does. The tokens go first, so a message over the
     * per-message cap (QT413, checked before any lock) is reported before the daily limit.
     * Every transaction takes the two windows in the same order, so two of them cannot deadlock.
     */
    public Usage recordUsage(String userId, long inputTokens, long outputTokens)
            throws QuotaExceededException, RequestException {
        Connection c = null;
        try {
            c = connection();
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement(CONSUME)) {
                Decision tokens = consume(ps, userId, "tokens", inputTokens + outputTokens);
                Decision messages = consume(ps, userId, "messages", 1);
                c.commit();
                return new Usage(tokens, messages);
            }
        } catch (SQLException e) {
            rollback(c);
            throw orQuotaError(e);
        } finally {
            try { if (c != null && !c.isClosed()) c.setAutoCommit(true); } catch (SQLException ignored) { }
        }
    }

    private static Decision consume(PreparedStatement ps, String userId, String metric, long amount)
            throws SQLException {
        ps.setString(1, userId);
        ps.setString(2, metric);
        ps.setLong(3, amount);
        try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            return decision(rs);
        }
    }

    /** Seed 001's getStatus: one row per limit of the user's plan. Writes nothing. */
    public SubscriptionStatus getStatus(String userId) throws RequestException {
        try (PreparedStatement ps = connection().prepareStatement(STATUS)) {
            ps.setString(1, userId);
            ps.setString(2, userId);
            String plan = null, monthlyReset = null, dailyReset = null;
            Long perMessage = null;
            long tokLimit = 0, tokUsed = 0, tokRemaining = 0, msgLimit = 0, msgUsed = 0, msgRemaining = 0;
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    plan = rs.getString("plan");
                    String reset = iso(rs.getObject("reset_at", OffsetDateTime.class));
                    if (rs.getString("metric").equals("tokens")) {
                        tokLimit = rs.getLong("limit_value");
                        tokUsed = rs.getLong("used");
                        tokRemaining = rs.getLong("remaining");
                        long cap = rs.getLong("per_request_max");
                        perMessage = rs.wasNull() ? null : cap;
                        monthlyReset = reset;
                    } else if (rs.getString("metric").equals("messages")) {
                        msgLimit = rs.getLong("limit_value");
                        msgUsed = rs.getLong("used");
                        msgRemaining = rs.getLong("remaining");
                        dailyReset = reset;
                    }
                }
            }
            return new SubscriptionStatus(plan, tokRemaining, msgRemaining, perMessage, tokLimit, msgLimit,
                    tokUsed, msgUsed, monthlyReset, dailyReset);
        } catch (SQLException e) {
            throw requestError(e);
        }
    }

    private static Decision decision(ResultSet rs) throws SQLException {
        return new Decision(rs.getString("metric"), rs.getBoolean("allowed"),
                rs.getLong("used") + rs.getLong("reserved"),
                rs.getLong("limit_value") + rs.getLong("bonus"),
                rs.getLong("remaining"), rs.getLong("requested"),
                iso(rs.getObject("reset_at", OffsetDateTime.class)));
    }

    private static String iso(OffsetDateTime t) { return t == null ? null : t.toInstant().toString(); }

    private static void rollback(Connection c) {
        try { if (c != null && !c.isClosed()) c.rollback(); } catch (SQLException ignored) { }
    }

    /**
     * No JDBC exception class knows the QT class: read the SQLSTATE and the DETAIL (one JSON
     * object) from the server's error message. null when the error is not a quota refusal.
     */
    private static QuotaExceededException quotaError(SQLException e) {
        String state = e.getSQLState();
        if (!("QT429".equals(state) || "QT413".equals(state)) || !(e instanceof PSQLException)) return null;
        ServerErrorMessage m = ((PSQLException) e).getServerErrorMessage();
        if (m == null || m.getDetail() == null) return null;
        return QuotaExceededException.fromDetail(state, Json.parseObject(m.getDetail()));
    }

    /** Any other error: 404 for an unknown subject, 400 for a bad argument, else 500. */
    private RequestException requestError(SQLException e) {
        String state = e.getSQLState();
        if (state != null && state.startsWith("08")) {  // connection lost: open a new one next time
            Connection c = connections.get();
            connections.remove();
            try { if (c != null) c.close(); } catch (SQLException ignored) { }
        }
        int status = "QT404".equals(state) ? 404 : state != null && state.startsWith("22") ? 400 : 500;
        return new RequestException(status, state, e.getMessage());
    }

    private QuotaExceededException orQuotaError(SQLException e) throws RequestException {
        QuotaExceededException q = quotaError(e);
        if (q == null) throw requestError(e);
        return q;
    }
}
