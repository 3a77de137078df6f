import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;

/**
 * Exact assertions over real HTTP against a running QuotaApp. Plans (set up by test.sh):
 * FREE = tokens 1000 a month (at most 400 per message) and 5 messages a day; PLUS = 200000
 * tokens a month (8000 per message) and 100 messages a day. The app role's quota clock is
 * pinned to 2026-11-23T12:00:00Z, so every window and reset date is known in advance.
 * Reads quota.subjects as postgres (JDBC) to see when a subscription is created.
 */
public final class ApiTest {
    static final Duration TIMEOUT = Duration.ofSeconds(10);
    static final HttpClient http = HttpClient.newBuilder().connectTimeout(TIMEOUT).build();
    static String base;
    static Connection admin;
    static int passed;

    static final String DAY_RESET = "2026-11-24T00:00:00Z";
    static final String MONTH_RESET = "2026-12-01T00:00:00Z";

    public static void main(String[] args) throws Exception {
        base = "http://127.0.0.1:" + System.getenv().getOrDefault("EXAMPLE_PORT", "55741");
        admin = DriverManager.getConnection("jdbc:postgresql://" + System.getenv().getOrDefault("QUOTA_TCP_HOST", "127.0.0.1")
                + ":" + System.getenv("PGPORT") + "/example_java", "postgres", "");
        try {
            run();
        } catch (AssertionError e) {
            System.err.println("FAIL: " + e.getMessage());
            System.exit(1);
        }
        System.out.println("all " + passed + " checks passed");
    }

    static void run() throws Exception {
        // A new user: the status evaluates the default plan (FREE) and writes nothing.
        Res r = get("/api/users/alice/subscription");
        eq("status of a new user: HTTP", r.status, 200);
        eq("status of a new user: body", r.json, Map.of(
                "planName", "FREE", "tokensRemainingThisMonth", 1000L, "messagesRemainingToday", 5L,
                "perMessageTokenLimit", 400L, "monthlyTokenLimit", 1000L, "dailyMessageLimit", 5L,
                "tokensUsedThisMonth", 0L, "messagesSentToday", 0L,
                "monthlyResetDate", MONTH_RESET, "dailyResetDate", DAY_RESET));
        eq("status wrote no subscription", subscription("alice"), null);

        r = post("/api/users/alice/quota/check", "");
        eq("check before the LLM call: HTTP", r.status, 200);
        eq("check before the LLM call: body", r.json,
                Map.of("allowed", true, "tokensRemainingThisMonth", 1000L, "messagesRemainingToday", 5L));
        eq("check wrote no subscription", subscription("alice"), null);

        r = usage("alice", 100, 200);
        eq("record 100+200 tokens: HTTP", r.status, 200);
        eq("record 100+200 tokens: body", r.json, Map.of("tokensRecorded", 300L, "tokensUsedThisMonth", 300L,
                "tokensRemainingThisMonth", 700L, "messagesSentToday", 1L, "messagesRemainingToday", 4L));
        eq("first use created the subscription with plan FREE", subscription("alice"), "FREE");

        // Tokens of one message over the per-message cap: QT413, still HTTP 429 (seed 001).
        r = usage("alice", 300, 150);
        eq("450 tokens in one message: HTTP", r.status, 429);
        eq("450 tokens in one message: body", pick(r.json, "error", "type", "limit", "current", "requested", "sqlstate"),
                Map.of("error", "QUOTA_EXCEEDED_MESSAGE_TOKEN_LIMIT", "type", "message_token_limit",
                        "limit", 400L, "current", 0L, "requested", 450L, "sqlstate", "QT413"));
        eq("450 tokens in one message: message", r.json.get("message"),
                "Message too long: 450 tokens requested, limit is 400 tokens per message");

        r = usage("alice", 200, 200);
        eq("record 400 tokens (the cap itself)", pick(r.json, "tokensUsedThisMonth", "messagesSentToday"),
                Map.of("tokensUsedThisMonth", 700L, "messagesSentToday", 2L));

        // The month's tokens: 700 used, 350 more do not fit.
        r = usage("alice", 200, 150);
        eq("350 tokens with 300 left: HTTP", r.status, 429);
        eq("350 tokens with 300 left: body", r.json, Map.of("status", 429L,
                "error", "QUOTA_EXCEEDED_MONTHLY_TOKEN_LIMIT", "type", "monthly_token_limit",
                "message", "Monthly token limit exceeded: 700/1000 tokens used, 350 requested",
                "limit", 1000L, "current", 700L, "requested", 350L, "resetAt", MONTH_RESET, "sqlstate", "QT429"));

        for (int k = 3; k <= 5; k++) {
            r = usage("alice", 1, 0);
            eq("message " + k + " of 5", pick(r.json, "messagesSentToday", "messagesRemainingToday"),
                    Map.of("messagesSentToday", (long) k, "messagesRemainingToday", 5L - k));
        }
        r = post("/api/users/alice/quota/check", "");
        eq("check with 5 of 5 messages sent: HTTP", r.status, 429);
        eq("check with 5 of 5 messages sent: body", pick(r.json, "type", "limit", "current", "requested", "resetAt", "sqlstate"),
                mapOf("type", "daily_message_limit", "limit", 5L, "current", 5L, "requested", 1L,
                        "resetAt", DAY_RESET, "sqlstate", null));
        r = usage("alice", 1, 1);
        eq("a 6th message: HTTP", r.status, 429);
        eq("a 6th message: body", pick(r.json, "error", "type", "limit", "current", "requested", "resetAt", "sqlstate"),
                Map.of("error", "QUOTA_EXCEEDED_DAILY_MESSAGE_LIMIT", "type", "daily_message_limit", "limit", 5L,
                        "current", 5L, "requested", 1L, "resetAt", DAY_RESET, "sqlstate", "QT429"));

        // The 6th message's 2 tokens fitted, but its transaction rolled back with the refusal.
        r = get("/api/users/alice/subscription");
        eq("status after the refusals", r.json, Map.of(
                "planName", "FREE", "tokensRemainingThisMonth", 297L, "messagesRemainingToday", 0L,
                "perMessageTokenLimit", 400L, "monthlyTokenLimit", 1000L, "dailyMessageLimit", 5L,
                "tokensUsedThisMonth", 703L, "messagesSentToday", 5L,
                "monthlyResetDate", MONTH_RESET, "dailyResetDate", DAY_RESET));
        eq("ledger of alice: 5 consumes of messages, 703 tokens in 5 consumes",
                ledger("alice"), "messages:5:5,tokens:5:703");

        // A user whose month of tokens is spent is stopped by the check (before the LLM call).
        for (int k = 0; k < 2; k++) usage("dave", 400, 0);
        eq("dave records 200 more", usage("dave", 150, 50).json.get("tokensRemainingThisMonth"), 0L);
        r = post("/api/users/dave/quota/check", "");
        eq("check with the month spent: HTTP", r.status, 429);
        eq("check with the month spent: body", pick(r.json, "type", "limit", "current", "requested", "resetAt"),
                Map.of("type", "monthly_token_limit", "limit", 1000L, "current", 1000L, "requested", 1L,
                        "resetAt", MONTH_RESET));

        // The whole flow: check, the (fake) model, record input + output characters.
        r = post("/api/users/bob/messages", "{\"content\": \"hello\"}");
        eq("chat message: HTTP", r.status, 200);
        eq("chat message: body", r.json, Map.of("tokensRecorded", 16L, "tokensUsedThisMonth", 16L,
                "tokensRemainingThisMonth", 984L, "messagesSentToday", 1L, "messagesRemainingToday", 4L,
                "reply", "echo: hello"));

        // A user an admin moved to PLUS (quota.assign_plan in test.sh).
        r = get("/api/users/carol/subscription");
        eq("PLUS status", pick(r.json, "planName", "perMessageTokenLimit", "monthlyTokenLimit", "dailyMessageLimit",
                "messagesRemainingToday"), Map.of("planName", "PLUS", "perMessageTokenLimit", 8000L,
                "monthlyTokenLimit", 200000L, "dailyMessageLimit", 100L, "messagesRemainingToday", 100L));

        // 10 messages at once for one user with 5 a day: the counter's row lock lets exactly 5 through.
        List<CompletableFuture<HttpResponse<String>>> all = new ArrayList<>();
        for (int k = 0; k < 10; k++) {
            all.add(http.sendAsync(request("/api/users/eve/usage", "{\"inputTokens\": 10, \"outputTokens\": 10}"),
                    HttpResponse.BodyHandlers.ofString()));
        }
        int ok = 0, refused = 0;
        for (CompletableFuture<HttpResponse<String>> f : all) {
            int s = f.get().statusCode();
            if (s == 200) ok++; else if (s == 429) refused++;
        }
        eq("10 concurrent messages, 5 a day: 200s and 429s", List.of(ok, refused), List.of(5, 5));
        eq("10 concurrent messages: status", pick(get("/api/users/eve/subscription").json,
                "messagesSentToday", "tokensUsedThisMonth"), Map.of("messagesSentToday", 5L, "tokensUsedThisMonth", 100L));

        // Bad requests.
        r = usage("frank", 0, 0);
        eq("0 tokens: HTTP 400 from quota_ext's 22023", List.of(r.status, r.json.get("sqlstate")), List.of(400, "22023"));
        r = post("/api/users/frank/usage", "{\"inputTokens\": -1, \"outputTokens\": 5}");
        eq("negative tokens: HTTP 400", r.status, 400);
        eq("no subscription for frank after bad requests", subscription("frank"), null);
        eq("unknown route: HTTP 404", get("/api/nothing").status, 404);
    }

    // --- helpers ---------------------------------------------------------------------------

    record Res(int status, Map<String, Object> json) { }

    static HttpRequest request(String path, String body) {
        return HttpRequest.newBuilder(URI.create(base + path)).timeout(TIMEOUT).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build();
    }

    static Res post(String path, String body) throws Exception {
        HttpResponse<String> r = http.send(request(path, body), HttpResponse.BodyHandlers.ofString());
        return new Res(r.statusCode(), Json.parseObject(r.body()));
    }

    static Res get(String path) throws Exception {
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(base + path)).timeout(TIMEOUT).GET().build(),
                HttpResponse.BodyHandlers.ofString());
        return new Res(r.statusCode(), Json.parseObject(r.body()));
    }

    static Res usage(String user, long in, long out) throws Exception {
        return post("/api/users/" + user + "/usage", "{\"inputTokens\": " + in + ", \"outputTokens\": " + out + "}");
    }

    /** The plan of the user's stored subscription (quota.subjects), or null if there is none. */
    static String subscription(String user) throws Exception {
        try (PreparedStatement ps = admin.prepareStatement("SELECT plan FROM quota.subjects WHERE subject = ?")) {
            ps.setString(1, user);
            try (ResultSet rs = ps.executeQuery()) {
                return rs.next() ? rs.getString(1) : null;
            }
        }
    }

    /** metric:consumes:units from the ledger, per metric. */
    static String ledger(String user) throws Exception {
        try (PreparedStatement ps = admin.prepareStatement(
                "SELECT string_agg(metric || ':' || n || ':' || s, ',' ORDER BY metric) FROM ("
                + " SELECT metric, count(*) AS n, sum(amount) AS s FROM quota.usage_events"
                + " WHERE subject = ? AND kind = 'consume' GROUP BY metric) t")) {
            ps.setString(1, user);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getString(1);
            }
        }
    }

    static Map<String, Object> pick(Map<String, Object> m, String... keys) {
        Map<String, Object> out = new java.util.HashMap<>();
        for (String k : keys) {
            if (!m.containsKey(k)) throw new AssertionError("key " + k + " missing from " + Json.write(m));
            out.put(k, m.get(k));
        }
        return out;
    }

    static Map<String, Object> mapOf(Object... kv) {  // Map.of refuses null values
        Map<String, Object> m = new java.util.HashMap<>();
        for (int k = 0; k < kv.length; k += 2) m.put((String) kv[k], kv[k + 1]);
        return m;
    }

    static void eq(String what, Object actual, Object expected) {
        boolean same = actual instanceof Map && expected instanceof Map
                ? new java.util.HashMap<>((Map<?, ?>) actual).equals(new java.util.HashMap<>((Map<?, ?>) expected))
                : Objects.equals(actual, expected);
        if (!same) {
            throw new AssertionError(what + "\n  expected: " + show(expected) + "\n  actual:   " + show(actual));
        }
        passed++;
        System.out.println("ok " + passed + " - " + what);
    }

    static String show(Object o) { return o instanceof Map || o instanceof List ? Json.write(o) : String.valueOf(o); }
}
