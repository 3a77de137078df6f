/** The three limits of seed 001's plans, as the HTTP error body names them. */
public enum QuotaType {
    /** Tokens of one message: the per-request cap of the tokens limit (QT413). */
    MESSAGE_TOKEN_LIMIT("message_token_limit", "Message exceeds token limit"),
    /** Tokens per month (QT429 on metric "tokens"). */
    MONTHLY_TOKEN_LIMIT("monthly_token_limit", "Monthly token limit exceeded"),
    /** Messages per day (QT429 on metric "messages"). */
    DAILY_MESSAGE_LIMIT("daily_message_limit", "Daily message limit reached");

    private final String code;
    private final String defaultMessage;

    QuotaType(String code, String defaultMessage) {
        this.code = code;
        this.defaultMessage = defaultMessage;
    }

    public String code() { return code; }
    public String defaultMessage() { return defaultMessage; }

    /** The limit a metric's QT429 stands for. */
    public static QuotaType ofMetric(String metric) {
        return "messages".equals(metric) ? DAILY_MESSAGE_LIMIT : MONTHLY_TOKEN_LIMIT;
    }
}
