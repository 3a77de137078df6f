import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Seed 001 (Java/Quarkus chat subscriptions) on the JDK's HTTP server and plain JDBC.
 *
 *   POST /api/users/{id}/quota/check   before the LLM call: 200, or 429 when a limit is reached
 *   POST /api/users/{id}/usage         after it: {"inputTokens": n, "outputTokens": m}
 *   POST /api/users/{id}/messages      the whole flow: check, a fake model, record: {"content": "..."}
 *   GET  /api/users/{id}/subscription  the status DTO (remaining, limits, used, reset dates)
 *
 * Environment: QUOTA_TCP_HOST (127.0.0.1), PGPORT, PGDATABASE (example_java),
 * PGUSER (java_app, a role in quota_app), EXAMPLE_PORT (55741).
 */
public final class QuotaApp {
    private static final Pattern ROUTE =
            Pattern.compile("^/api/users/([^/]+)/(quota/check|usage|messages|subscription)$");
    private static final Pattern USER_ID = Pattern.compile("^[A-Za-z0-9._:@-]{1,128}$");

    private final QuotaService quota;

    QuotaApp(QuotaService quota) { this.quota = quota; }

    public static void main(String[] args) throws IOException {
        String host = env("QUOTA_TCP_HOST", "127.0.0.1");
        String url = "jdbc:postgresql://" + host + ":" + env("PGPORT", "5432") + "/" + env("PGDATABASE", "example_java");
        QuotaApp app = new QuotaApp(new QuotaService(url, env("PGUSER", "java_app")));
        int port = Integer.parseInt(env("EXAMPLE_PORT", "55741"));
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
        ExecutorService pool = Executors.newFixedThreadPool(4);
        server.setExecutor(pool);
        server.createContext("/", app::handle);
        server.start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> { server.stop(0); pool.shutdownNow(); }));
        System.out.println("quota_ext java example listening on http://127.0.0.1:" + port + " (" + url + ")");
    }

    private static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? dflt : v;
    }

    private void handle(HttpExchange ex) throws IOException {
        try {
            String path = ex.getRequestURI().getPath();
            String method = ex.getRequestMethod();
            if (path.equals("/health")) {
                Map<String, Object> body = new LinkedHashMap<>();
                body.put("status", "ok");
                body.put("pid", ProcessHandle.current().pid());
                send(ex, 200, body);
                return;
            }
            Matcher m = ROUTE.matcher(path);
            if (!m.matches()) {
                send(ex, 404, error(404, "NOT_FOUND", "no route " + path));
                return;
            }
            String userId = URLDecoder.decode(m.group(1), StandardCharsets.UTF_8);
            if (!USER_ID.matcher(userId).matches()) {
                send(ex, 400, error(400, "BAD_REQUEST", "bad user id"));
                return;
            }
            String action = m.group(2);
            boolean get = action.equals("subscription");
            if (!method.equals(get ? "GET" : "POST")) {
                send(ex, 405, error(405, "METHOD_NOT_ALLOWED", method + " " + path));
                return;
            }
            switch (action) {
                case "quota/check": {
                    Map<String, QuotaService.Decision> d = quota.checkQuotaBeforeCall(userId);
                    Map<String, Object> body = new LinkedHashMap<>();
                    body.put("allowed", true);
                    body.put("tokensRemainingThisMonth", d.get("tokens").remaining());
                    body.put("messagesRemainingToday", d.get("messages").remaining());
                    send(ex, 200, body);
                    break;
                }
                case "usage": {
                    Map<String, Object> in = body(ex);
                    long input = count(in, "inputTokens"), output = count(in, "outputTokens");
                    send(ex, 200, usage(quota.recordUsage(userId, input, output)));
                    break;
                }
                case "messages": {
                    Map<String, Object> in = body(ex);
                    if (!(in.get("content") instanceof String)) throw new IllegalArgumentException("content must be a string");
                    String content = (String) in.get("content");
                    quota.checkQuotaBeforeCall(userId);
                    String reply = "echo: " + content;  // the model call, faked
                    // Seed 001's MVP token count: one character is one token, input + output.
                    Map<String, Object> body = usage(quota.recordUsage(userId, content.length(), reply.length()));
                    body.put("reply", reply);
                    send(ex, 200, body);
                    break;
                }
                default: {
                    send(ex, 200, statusBody(quota.getStatus(userId)));
                }
            }
        } catch (QuotaExceededException e) {
            System.err.println("quota refusal: " + e.getMessage());
            send(ex, QuotaExceededException.HTTP_TOO_MANY_REQUESTS, e.body());
        } catch (QuotaService.RequestException e) {
            // A 4xx is the caller's mistake and says which; a 5xx's text stays in the log.
            boolean internal = e.status >= 500;
            if (internal) System.err.println("database error " + e.sqlState + ": " + e.getMessage());
            Map<String, Object> body = error(e.status, "DATABASE_" + e.sqlState, internal ? "internal error (see the server log)" : e.getMessage());
            body.put("sqlstate", e.sqlState);
            send(ex, e.status, body);
        } catch (IllegalArgumentException e) {
            send(ex, 400, error(400, "BAD_REQUEST", e.getMessage()));
        } catch (RuntimeException e) {
            e.printStackTrace();
            send(ex, 500, error(500, "INTERNAL", "internal error (see the server log)"));
        }
    }

    private static Map<String, Object> body(HttpExchange ex) throws IOException {
        String text = new String(ex.getRequestBody().readAllBytes(), StandardCharsets.UTF_8);
        return Json.parseObject(text);
    }

    private static long count(Map<String, Object> in, String key) {
        Object v = in.get(key);
        if (!(v instanceof Long) || (Long) v < 0) throw new IllegalArgumentException(key + " must be an integer >= 0");
        return (Long) v;
    }

    private static Map<String, Object> usage(QuotaService.Usage u) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("tokensRecorded", u.tokens().requested());
        m.put("tokensUsedThisMonth", u.tokens().used());
        m.put("tokensRemainingThisMonth", u.tokens().remaining());
        m.put("messagesSentToday", u.messages().used());
        m.put("messagesRemainingToday", u.messages().remaining());
        return m;
    }

    private static Map<String, Object> statusBody(QuotaService.SubscriptionStatus s) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("planName", s.planName());
        m.put("tokensRemainingThisMonth", s.tokensRemainingThisMonth());
        m.put("messagesRemainingToday", s.messagesRemainingToday());
        m.put("perMessageTokenLimit", s.perMessageTokenLimit());
        m.put("monthlyTokenLimit", s.monthlyTokenLimit());
        m.put("dailyMessageLimit", s.dailyMessageLimit());
        m.put("tokensUsedThisMonth", s.tokensUsedThisMonth());
        m.put("messagesSentToday", s.messagesSentToday());
        m.put("monthlyResetDate", s.monthlyResetDate());
        m.put("dailyResetDate", s.dailyResetDate());
        return m;
    }

    private static Map<String, Object> error(int status, String code, String message) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("status", status);
        m.put("error", code);
        m.put("message", message);
        return m;
    }

    private static void send(HttpExchange ex, int status, Map<String, Object> body) throws IOException {
        byte[] bytes = Json.write(body).getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream os = ex.getResponseBody()) {
            os.write(bytes);
        }
    }
}
