package tidal.baseline;

import com.fasterxml.jackson.databind.JsonNode;

/** A model as the stream calls it: one request's text in, its JSON result out. */
interface Model {
  JsonNode predict(String text) throws Exception;
}
