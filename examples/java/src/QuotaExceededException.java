import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A quota refusal, answered with HTTP 429 and a JSON body holding type, limit, current and
 * requested (seed 001). Built from quota_ext's answer: the DETAIL of a QT429/QT413 error,
 * or a quota_check decision with allowed = false.
 */
public class QuotaExceededException extends Exception {
    private static final long serialVersionUID = 1L;
    public static final int HTTP_TOO_MANY_REQUESTS = 429;

    private final QuotaType type;
    private final long limit;
    private final long current;
    private final long requested;
    private final String resetAt;   // ISO 8601 UTC, null for lifetime limits
    private final String sqlState;  // QT429, QT413, or null for a check

    public QuotaExceededException(QuotaType type, long limit, long current, long requested,
                                  String resetAt, String sqlState) {
        super(message(type, limit, current, requested));
        this.type = type;
        this.limit = limit;
        this.current = current;
        this.requested = requested;
        this.resetAt = resetAt;
        this.sqlState = sqlState;
    }

    /**
     * From the DETAIL JSON of QT429 (limit = plan limit + bonus, used, requested) or QT413
     * (per_request_max; the seed reports current = 0 for a message over the cap).
     */
    public static QuotaExceededException fromDetail(String sqlState, Map<String, Object> d) {
        long requested = num(d.get("requested"));
        String resetAt = d.get("reset_at") == null ? null : d.get("reset_at").toString();
        if ("QT413".equals(sqlState)) {
            return new QuotaExceededException(QuotaType.MESSAGE_TOKEN_LIMIT,
                    num(d.get("per_request_max")), 0, requested, resetAt, sqlState);
        }
        return new QuotaExceededException(QuotaType.ofMetric((String) d.get("metric")),
                num(d.get("limit")), num(d.get("used")) + num(d.get("reserved")), requested,
                resetAt, sqlState);
    }

    private static long num(Object o) { return o == null ? 0 : ((Number) o).longValue(); }

    private static String message(QuotaType type, long limit, long current, long requested) {
        switch (type) {
            case MESSAGE_TOKEN_LIMIT:
                return String.format("Message too long: %d tokens requested, limit is %d tokens per message",
                        requested, limit);
            case MONTHLY_TOKEN_LIMIT:
                return String.format("Monthly token limit exceeded: %d/%d tokens used, %d requested",
                        current, limit, requested);
            default:
                return String.format("Daily message limit reached: %d/%d messages sent today", current, limit);
        }
    }

    public QuotaType type() { return type; }

    /** The HTTP 429 body. */
    public Map<String, Object> body() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("status", HTTP_TOO_MANY_REQUESTS);
        m.put("error", "QUOTA_EXCEEDED_" + type.code().toUpperCase());
        m.put("type", type.code());
        m.put("message", getMessage());
        m.put("limit", limit);
        m.put("current", current);
        m.put("requested", requested);
        m.put("resetAt", resetAt);
        m.put("sqlstate", sqlState);
        return m;
    }
}
