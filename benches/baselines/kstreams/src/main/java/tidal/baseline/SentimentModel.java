package tidal.baseline;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtSession;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.Map;

/**
 * tidal's sentiment model from the same model.onnx and tokenizer.json: the Hugging Face tokenizer
 * (its Rust library, through DJL), truncation to max_tokens, ONNX Runtime with one intra-op
 * thread, softmax over the logits. One request at a time, as a {@code mapValues} sees them.
 */
final class SentimentModel implements Model {
  private final HuggingFaceTokenizer tokenizer;
  private final OrtEnvironment env = OrtEnvironment.getEnvironment();
  private final OrtSession session;
  private final String[] labels;

  SentimentModel(Path model, Path tokenizerFile, String[] labels, int maxTokens) throws Exception {
    this.tokenizer = HuggingFaceTokenizer.newInstance(tokenizerFile,
        Map.of("truncation", "true", "maxLength", Integer.toString(maxTokens), "padding", "false"));
    OrtSession.SessionOptions options = new OrtSession.SessionOptions();
    options.setIntraOpNumThreads(1);
    options.setInterOpNumThreads(1);
    options.setExecutionMode(OrtSession.SessionOptions.ExecutionMode.SEQUENTIAL);
    this.session = env.createSession(model.toString(), options);
    this.labels = labels;
  }

  @Override
  public JsonNode predict(String text) throws Exception {
    Encoding encoding = tokenizer.encode(text);
    long[][] ids = {encoding.getIds()};
    long[][] mask = {encoding.getAttentionMask()};
    try (OnnxTensor idTensor = OnnxTensor.createTensor(env, ids);
        OnnxTensor maskTensor = OnnxTensor.createTensor(env, mask);
        OrtSession.Result out = session.run(Map.of("input_ids", idTensor, "attention_mask", maskTensor))) {
      float[] logits = ((float[][]) out.get(0).getValue())[0];
      double max = Double.NEGATIVE_INFINITY;
      for (float l : logits) {
        max = Math.max(max, l);
      }
      double[] probs = new double[logits.length];
      double sum = 0;
      for (int i = 0; i < logits.length; i++) {
        probs[i] = Math.exp(logits[i] - max);
        sum += probs[i];
      }
      int best = 0;
      ObjectNode scores = JsonNodeFactory.instance.objectNode();
      for (int i = 0; i < probs.length; i++) {
        probs[i] /= sum;
        scores.put(labels[i], probs[i]);
        if (probs[i] > probs[best]) {
          best = i;
        }
      }
      ObjectNode result = JsonNodeFactory.instance.objectNode();
      result.put("label", labels[best]);
      result.put("score", probs[best]);
      result.set("scores", scores);
      return result;
    }
  }
}
