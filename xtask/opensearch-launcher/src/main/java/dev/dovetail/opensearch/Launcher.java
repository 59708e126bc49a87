package dev.dovetail.opensearch;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.Version;
import org.opensearch.action.admin.cluster.health.ClusterHealthResponse;
import org.opensearch.common.settings.Settings;
import org.opensearch.common.unit.TimeValue;
import org.opensearch.env.Environment;
import org.opensearch.http.HttpServerTransport;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.TransportService;

/**
 * Starts a real single-node OpenSearch node on loopback for Dovetail's tests.
 *
 * <p>Options (each may also be given as a system property, shown in brackets):
 * <pre>
 *   --http-port N        [dovetail.opensearch.http.port]       default 9200; 0 = pick a free port
 *   --transport-port N   [dovetail.opensearch.transport.port]  default 0 (pick a free port)
 *   --home DIR           [dovetail.opensearch.home]            required; path.home (created if missing)
 *   --data DIR           [dovetail.opensearch.data]            default HOME/data
 *   --cluster-name NAME  [dovetail.opensearch.cluster.name]    default dovetail-test
 *   --node-name NAME     [dovetail.opensearch.node.name]       default dovetail-node
 *   --default-replicas N [dovetail.opensearch.default.replicas] default 0; replicas of indices created
 *                        without index.number_of_replicas (stock OpenSearch: 1, i.e. yellow on one node)
 *   --setting KEY=VALUE  (repeatable) any extra node setting, applied last
 *   --watch-stdin        [dovetail.opensearch.watch.stdin=true] shut down when stdin reaches EOF
 *                        (so the node dies with its parent if the parent keeps a pipe open)
 * </pre>
 *
 * <p>Prints exactly one line {@code DOVETAIL-OPENSEARCH READY http://127.0.0.1:PORT} on stdout once the
 * node is started and the cluster is at least yellow, or {@code DOVETAIL-OPENSEARCH FAILED ...} and
 * exits 1. On SIGTERM/SIGINT the node is closed cleanly and the JVM exits 0.
 */
public final class Launcher {

    static final String PREFIX = "DOVETAIL-OPENSEARCH";

    /** A node that loads the given plugin classes from the classpath, like the test framework's MockNode. */
    static final class DovetailNode extends Node {
        DovetailNode(Environment environment, Collection<Class<? extends Plugin>> classpathPlugins) {
            super(environment, classpathPlugins, true);
        }
    }

    private Launcher() {}

    public static void main(String[] args) {
        // Must happen before any Netty / log4j class is initialised. Same values as OpenSearch's own
        // launcher (SystemJvmOptions); -D on the command line wins.
        defaultProperty("log4j.shutdownHookEnabled", "false"); // we close the node ourselves, then log4j
        defaultProperty("log4j2.disable.jmx", "true");
        defaultProperty("jna.nosys", "true");
        defaultProperty("io.netty.noUnsafe", "true");
        defaultProperty("io.netty.noKeySetOptimization", "true");
        defaultProperty("io.netty.recycler.maxCapacityPerThread", "0");
        defaultProperty("io.netty.allocator.numDirectArenas", "0");

        final PrintStream out = System.out;
        final Options opts;
        try {
            opts = Options.parse(args);
        } catch (IllegalArgumentException e) {
            out.println(PREFIX + " FAILED bad arguments: " + e.getMessage());
            out.flush();
            System.exit(2);
            return;
        }

        final CountDownLatch stopped = new CountDownLatch(1);
        final Node[] holder = new Node[1];
        final Object lock = new Object();
        final boolean[] closing = new boolean[1];
        final int[] exitCode = new int[1];

        Thread hook = new Thread(() -> {
            long t0 = System.nanoTime();
            boolean ok;
            synchronized (lock) {
                closing[0] = true;
                ok = closeQuietly(holder[0]);
            }
            org.apache.logging.log4j.LogManager.shutdown();
            out.println(PREFIX + " STOPPED clean=" + ok + " in " + (System.nanoTime() - t0) / 1_000_000 + " ms");
            out.flush();
            stopped.countDown();
            // A SIGTERM'd JVM would otherwise exit 143; report a clean stop as 0 (failures keep their code).
            Runtime.getRuntime().halt(exitCode[0] != 0 ? exitCode[0] : (ok ? 0 : 1));
        }, "dovetail-opensearch-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);

        try {
            Files.createDirectories(opts.home);
            Files.createDirectories(opts.data);
            Files.createDirectories(opts.home.resolve("logs"));

            Settings.Builder b = Settings.builder()
                .put("cluster.name", opts.clusterName)
                .put("node.name", opts.nodeName)
                .put("path.home", opts.home.toString())
                .put("path.data", opts.data.toString())
                .put("path.logs", opts.home.resolve("logs").toString())
                .put("discovery.type", "single-node")
                .put("network.host", "127.0.0.1")
                .put("http.port", Integer.toString(opts.httpPort))
                .put("transport.port", Integer.toString(opts.transportPort))
                .put("bootstrap.memory_lock", false)
                // Test disks may be nearly full: never flip indices to read-only because of watermarks.
                .put("cluster.routing.allocation.disk.threshold_enabled", false)
                .put("cluster.default_number_of_replicas", opts.defaultReplicas)
                .put("action.auto_create_index", true);
            for (Map.Entry<String, String> e : opts.extra.entrySet()) {
                b.put(e.getKey(), e.getValue());
            }
            Settings settings = b.build();

            Environment env = InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), null, () -> opts.nodeName);
            List<Class<? extends Plugin>> plugins = List.of(
                org.opensearch.transport.Netty4Plugin.class,                // HTTP + transport layer
                org.opensearch.analysis.common.CommonAnalysisPlugin.class   // analysis-common analyzers/filters
            );

            // Construct and start under the lock so that a SIGTERM during start-up waits for start() to
            // finish and then closes a fully started node, instead of racing with it.
            synchronized (lock) {
                if (closing[0]) {
                    return;
                }
                holder[0] = new DovetailNode(env, plugins);
                holder[0].start();
            }

            ClusterHealthResponse health = holder[0].client().admin().cluster().prepareHealth()
                .setWaitForYellowStatus()
                .setTimeout(TimeValue.timeValueSeconds(60))
                .get();
            if (health.isTimedOut()) {
                throw new IllegalStateException("cluster did not reach yellow within 60s: " + health.getStatus());
            }

            // OpenSearch 2.19 only honours cluster.default_number_of_replicas when it is in the cluster
            // metadata (node settings are ignored at index creation), so set it as a persistent setting.
            // Default 0: on a single node a replica can never be assigned and would keep indices yellow.
            holder[0].client().admin().cluster().prepareUpdateSettings()
                .setPersistentSettings(Settings.builder().put("cluster.default_number_of_replicas", opts.defaultReplicas))
                .get();

            int httpPort = holder[0].injector().getInstance(HttpServerTransport.class)
                .boundAddress().publishAddress().getPort();
            int transportPort = holder[0].injector().getInstance(TransportService.class)
                .boundAddress().publishAddress().getPort();

            out.println(PREFIX + " INFO version=" + Version.CURRENT + " transport=127.0.0.1:" + transportPort
                + " home=" + opts.home + " data=" + opts.data + " pid=" + ProcessHandle.current().pid());
            out.println(PREFIX + " READY http://127.0.0.1:" + httpPort);
            out.flush();
        } catch (Throwable t) {
            boolean wasClosing;
            synchronized (lock) {
                wasClosing = closing[0];
            }
            if (!wasClosing) {
                out.println(PREFIX + " FAILED " + t.getClass().getName() + ": " + t.getMessage());
                out.flush();
                t.printStackTrace();
                exitCode[0] = 1;
                System.exit(1); // the shutdown hook closes whatever was started
            }
            return;
        }

        if (opts.watchStdin) {
            Thread watcher = new Thread(() -> {
                try {
                    InputStream in = System.in;
                    byte[] buf = new byte[256];
                    while (in.read(buf) >= 0) {
                        // ignore input
                    }
                } catch (IOException ignored) {
                    // treat like EOF
                }
                out.println(PREFIX + " STDIN-EOF shutting down");
                out.flush();
                System.exit(0);
            }, "dovetail-opensearch-stdin-watch");
            watcher.setDaemon(true);
            watcher.start();
        }

        // OpenSearch's threads are daemons: keep the JVM alive until the shutdown hook has run.
        while (true) {
            try {
                stopped.await();
                return;
            } catch (InterruptedException ignored) {
                // keep waiting
            }
        }
    }

    private static boolean closeQuietly(Node node) {
        if (node == null) {
            return true;
        }
        try {
            node.close();
            if (!node.awaitClose(20, TimeUnit.SECONDS)) {
                System.err.println(PREFIX + " WARN node did not close within 20s");
                return false;
            }
            return true;
        } catch (Throwable t) {
            System.err.println(PREFIX + " WARN error while closing node: " + t);
            return false;
        }
    }

    private static void defaultProperty(String key, String value) {
        if (System.getProperty(key) == null) {
            System.setProperty(key, value);
        }
    }

    static final class Options {
        int httpPort = 9200;
        int transportPort = 0;
        Path home;
        Path data;
        String clusterName = "dovetail-test";
        String nodeName = "dovetail-node";
        int defaultReplicas = 0;
        boolean watchStdin;
        final Map<String, String> extra = new LinkedHashMap<>();

        private static final java.util.Set<String> VALUE_OPTIONS = java.util.Set.of(
            "--http-port", "--transport-port", "--home", "--data", "--cluster-name", "--node-name",
            "--default-replicas", "--setting");

        static Options parse(String[] args) {
            Options o = new Options();
            String p;
            if ((p = System.getProperty("dovetail.opensearch.http.port")) != null) o.httpPort = port(p);
            if ((p = System.getProperty("dovetail.opensearch.transport.port")) != null) o.transportPort = port(p);
            if ((p = System.getProperty("dovetail.opensearch.home")) != null) o.home = Paths.get(p);
            if ((p = System.getProperty("dovetail.opensearch.data")) != null) o.data = Paths.get(p);
            if ((p = System.getProperty("dovetail.opensearch.cluster.name")) != null) o.clusterName = p;
            if ((p = System.getProperty("dovetail.opensearch.node.name")) != null) o.nodeName = p;
            if ((p = System.getProperty("dovetail.opensearch.default.replicas")) != null) o.defaultReplicas = count(p);
            o.watchStdin = Boolean.parseBoolean(System.getProperty("dovetail.opensearch.watch.stdin", "false"));

            List<String> a = new ArrayList<>(List.of(args));
            for (int i = 0; i < a.size(); i++) {
                String arg = a.get(i);
                String value = null;
                int eq = arg.indexOf('=');
                if (arg.startsWith("--") && eq > 0 && !arg.startsWith("--setting=")) {
                    value = arg.substring(eq + 1);
                    arg = arg.substring(0, eq);
                } else if (arg.startsWith("--setting=")) {
                    value = arg.substring("--setting=".length());
                    arg = "--setting";
                }
                switch (arg) {
                    case "--watch-stdin":
                        o.watchStdin = true;
                        continue;
                    case "--help":
                    case "-h":
                        throw new IllegalArgumentException(
                            "usage: Launcher --home DIR [--http-port N] [--transport-port N] [--data DIR]"
                                + " [--cluster-name NAME] [--node-name NAME] [--default-replicas N] [--setting K=V]..."
                                + " [--watch-stdin]");
                    default:
                        break;
                }
                if (!VALUE_OPTIONS.contains(arg)) {
                    throw new IllegalArgumentException("unknown argument " + arg);
                }
                if (value == null) {
                    if (i + 1 >= a.size()) {
                        throw new IllegalArgumentException("missing value for " + arg);
                    }
                    value = a.get(++i);
                }
                switch (arg) {
                    case "--http-port": o.httpPort = port(value); break;
                    case "--transport-port": o.transportPort = port(value); break;
                    case "--home": o.home = Paths.get(value); break;
                    case "--data": o.data = Paths.get(value); break;
                    case "--cluster-name": o.clusterName = value; break;
                    case "--node-name": o.nodeName = value; break;
                    case "--default-replicas": o.defaultReplicas = count(value); break;
                    case "--setting": {
                        int k = value.indexOf('=');
                        if (k <= 0) throw new IllegalArgumentException("--setting needs KEY=VALUE, got " + value);
                        o.extra.put(value.substring(0, k), value.substring(k + 1));
                        break;
                    }
                    default:
                        throw new IllegalArgumentException("unknown argument " + arg);
                }
            }
            if (o.home == null) {
                throw new IllegalArgumentException("--home DIR (or -Ddovetail.opensearch.home) is required");
            }
            o.home = o.home.toAbsolutePath().normalize();
            o.data = (o.data == null ? o.home.resolve("data") : o.data).toAbsolutePath().normalize();
            return o;
        }

        private static int count(String s) {
            try {
                int v = Integer.parseInt(s.trim());
                if (v >= 0) return v;
            } catch (NumberFormatException e) {
                // fall through
            }
            throw new IllegalArgumentException("not a non-negative integer: " + s);
        }

        private static int port(String s) {
            int v;
            try {
                v = Integer.parseInt(s.trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("not a port: " + s);
            }
            if (v < 0 || v > 65535) throw new IllegalArgumentException("port out of range: " + s);
            return v;
        }
    }
}
