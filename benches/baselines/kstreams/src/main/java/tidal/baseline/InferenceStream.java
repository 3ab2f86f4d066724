package tidal.baseline;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

/**
 * The architecture the field reaches for when it wants ML on a Kafka stream, exactly once: a
 * Kafka Streams application with the model in-process. Requests → {@code mapValues(model)} →
 * results, {@code processing.guarantee = exactly_once_v2}, everything else at its defaults (under
 * exactly-once Kafka Streams commits every 100 ms).
 *
 * <p>Same contract as tidal: request {@code {"id", "text"}}, result {@code {"id", "model",
 * "model_version", "status": "ok", "result": {...}}}, the request's key kept.
 *
 * <p>Usage: {@code java -cp 'target/kstreams-inference-1.0.jar:target/lib/*'
 * tidal.baseline.InferenceStream --brokers B --requests T --results T --application-id A
 * --state-dir D --threads N --model text-classification|echo [--model-file F --tokenizer F
 * --labels a,b --max-tokens N] --name N --version V}
 */
public final class InferenceStream {
  private static final ObjectMapper JSON = new ObjectMapper();

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = parse(argv);
    String kind = need(args, "model");
    String name = need(args, "name");
    String version = need(args, "version");
    int threads = Integer.parseInt(args.getOrDefault("threads", "1"));
    // One model per stream thread, as one ONNX Runtime session per tidal worker.
    ThreadLocal<Model> models = ThreadLocal.withInitial(() -> load(kind, args));
    for (int i = 0; i < threads; i++) {
      Thread warm = new Thread(() -> models.get());
      warm.start();
      warm.join();
    }

    StreamsBuilder builder = new StreamsBuilder();
    builder.stream(need(args, "requests"), Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
        .mapValues(value -> answer(models.get(), name, version, value))
        .to(need(args, "results"), Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, need(args, "application-id"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, need(args, "brokers"));
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
    props.put(StreamsConfig.STATE_DIR_CONFIG, need(args, "state-dir"));
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");

    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close();
      stopped.countDown();
    }));
    streams.setUncaughtExceptionHandler(e -> {
      e.printStackTrace();
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
          .SHUTDOWN_CLIENT;
    });
    streams.start();
    System.err.println("kstreams baseline running: model " + name + ", " + threads + " stream thread(s)");
    stopped.await();
  }

  private static byte[] answer(Model model, String name, String version, byte[] value) {
    try {
      JsonNode request = JSON.readTree(value);
      ObjectNode result = JSON.createObjectNode();
      result.set("id", request.get("id"));
      result.put("model", name);
      result.put("model_version", version);
      result.put("status", "ok");
      result.set("result", model.predict(request.path("text").asText()));
      return JSON.writeValueAsBytes(result);
    } catch (Exception e) {
      throw new IllegalStateException("cannot answer a request: " + e, e);
    }
  }

  private static Model load(String kind, Map<String, String> args) {
    try {
      return switch (kind) {
        case "echo" -> new EchoModel();
        case "text-classification" -> new SentimentModel(
            Path.of(need(args, "model-file")),
            Path.of(need(args, "tokenizer")),
            need(args, "labels").split(","),
            Integer.parseInt(need(args, "max-tokens")));
        default -> throw new IllegalArgumentException("unknown --model " + kind + " (text-classification or echo)");
      };
    } catch (Exception e) {
      throw new IllegalStateException("cannot load model " + kind + ": " + e, e);
    }
  }

  private static Map<String, String> parse(String[] argv) {
    Map<String, String> args = new HashMap<>();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      if (!argv[i].startsWith("--")) {
        throw new IllegalArgumentException("expected --name value, got " + argv[i]);
      }
      args.put(argv[i].substring(2), argv[i + 1]);
    }
    return args;
  }

  private static String need(Map<String, String> args, String name) {
    String value = args.get(name);
    if (value == null) {
      throw new IllegalArgumentException("missing --" + name);
    }
    return value;
  }
}
