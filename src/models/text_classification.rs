//! Text classification: any Hugging Face–style sequence-classification export (token ids and an
//! attention mask in, logits out) plus its `tokenizer.json`.
//!
//! A batch is tokenised, sorted by length and cut into groups whose padding stays small, so a
//! short text never pays for a long neighbour; each group is one ONNX Runtime run.

use std::path::Path;

use ndarray::Array2;
use ort::session::Session;
use ort::value::TensorRef;
use serde_json::{json, Map, Value};
use tokenizers::{Tokenizer, TruncationParams};

use super::{Manifest, Model, TextClassificationSpec};
use crate::codec::{Input, InputKind};
use crate::error::{Error, Result};

/// Largest padding overhead accepted within one group (padded tokens / real tokens).
const MAX_PADDING_RATIO: f32 = 1.25;

/// A loaded text classifier.
pub struct TextClassifier {
    name: String,
    version: String,
    spec: TextClassificationSpec,
    tokenizer: Tokenizer,
    /// Id that fills the padded tail of a row: the tokenizer's own, else 0 (BERT's `[PAD]`).
    pad_id: i64,
    session: Session,
}

impl TextClassifier {
    /// Loads the tokenizer and builds the session.
    pub fn load(manifest: &Manifest, spec: &TextClassificationSpec, model_dir: &Path) -> Result<Self> {
        let model_error = |reason: String| Error::Model { model: manifest.name.clone(), reason };
        let tokenizer_path = model_dir.join(&spec.tokenizer);
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| model_error(format!("cannot load tokenizer {}: {e}", tokenizer_path.display())))?;
        // Padding is done per length group below, with the id the tokenizer declares (1 for
        // RoBERTa/MPNet exports, whose position ids skip pad ids).
        let pad_id = tokenizer.get_padding().map_or(0, |padding| i64::from(padding.pad_id));
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: spec.max_tokens, ..Default::default() }))
            .map_err(|e| model_error(format!("cannot set truncation to {} tokens: {e}", spec.max_tokens)))?;
        let session = super::new_session(&model_dir.join(&spec.model))?;
        let classifier = TextClassifier {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            spec: spec.clone(),
            tokenizer,
            pad_id,
            session,
        };
        classifier.check_signature().map_err(model_error)?;
        Ok(classifier)
    }

    /// Fails early when the manifest's tensor names do not match the ONNX file.
    fn check_signature(&self) -> std::result::Result<(), String> {
        let inputs: Vec<&str> = self.session.inputs().iter().map(|i| i.name()).collect();
        let outputs: Vec<&str> = self.session.outputs().iter().map(|o| o.name()).collect();
        let mut wanted = vec![&self.spec.input_ids, &self.spec.attention_mask];
        wanted.extend(self.spec.token_type_ids.as_ref());
        for name in wanted {
            if !inputs.contains(&name.as_str()) {
                return Err(format!("the ONNX model has no input '{name}' (it has {inputs:?}); fix the manifest"));
            }
        }
        if !outputs.contains(&self.spec.logits.as_str()) {
            return Err(format!(
                "the ONNX model has no output '{}' (it has {outputs:?}); fix the manifest",
                self.spec.logits
            ));
        }
        Ok(())
    }

    /// Token ids of each text (truncated to `max_tokens`).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<i64>>> {
        texts
            .iter()
            .map(|text| {
                let encoding = self
                    .tokenizer
                    .encode(*text, true)
                    .map_err(|e| Error::Model { model: self.name.clone(), reason: format!("tokenizer failed: {e}") })?;
                Ok(encoding.get_ids().iter().map(|&id| i64::from(id)).collect())
            })
            .collect()
    }

    /// Probabilities (softmax of the logits) of each text, in input order.
    pub fn probabilities(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let tokens = self.tokenize(texts)?;
        let mut out = vec![Vec::new(); texts.len()];
        for group in length_groups(&tokens) {
            let logits = self.run_group(&tokens, &group)?;
            for (row, &index) in group.iter().enumerate() {
                out[index] = softmax(&logits[row]);
            }
        }
        Ok(out)
    }

    fn run_group(&mut self, tokens: &[Vec<i64>], group: &[usize]) -> Result<Vec<Vec<f32>>> {
        let width = group.iter().map(|&i| tokens[i].len()).max().unwrap_or(1).max(1);
        let mut ids = Array2::<i64>::from_elem((group.len(), width), self.pad_id);
        let mut mask = Array2::<i64>::zeros((group.len(), width));
        for (row, &index) in group.iter().enumerate() {
            for (col, &id) in tokens[index].iter().enumerate() {
                ids[[row, col]] = id;
                mask[[row, col]] = 1;
            }
        }
        let type_ids = Array2::<i64>::zeros((group.len(), width));
        let ort_err = |e: ort::Error| Error::ort(&format!("running model '{}'", self.name), e);
        let mut inputs = ort::inputs![
            self.spec.input_ids.as_str() => TensorRef::from_array_view(&ids).map_err(ort_err)?,
            self.spec.attention_mask.as_str() => TensorRef::from_array_view(&mask).map_err(ort_err)?,
        ];
        if let Some(name) = &self.spec.token_type_ids {
            inputs.push((name.clone().into(), TensorRef::from_array_view(&type_ids).map_err(ort_err)?.into()));
        }
        let labels = self.spec.labels.len();
        let name = self.name.clone();
        let outputs = self.session.run(inputs).map_err(|e| Error::ort(&format!("running model '{name}'"), e))?;
        let logits = outputs[self.spec.logits.as_str()]
            .try_extract_array::<f32>()
            .map_err(|e| Error::ort(&format!("reading logits of '{name}'"), e))?;
        if logits.ndim() != 2 || logits.shape()[0] != group.len() || logits.shape()[1] != labels {
            return Err(Error::Model {
                model: name,
                reason: format!("logits have shape {:?}, expected [{}, {labels}]", logits.shape(), group.len()),
            });
        }
        Ok(logits.outer_iter().map(|row| row.iter().copied().collect()).collect())
    }

    /// The JSON result for one probability vector.
    fn result_json(&self, probs: &[f32]) -> Value {
        let (best, score) =
            probs
                .iter()
                .copied()
                .enumerate()
                .fold((0, f32::MIN), |best, (i, p)| if p > best.1 { (i, p) } else { best });
        let scores: Map<String, Value> =
            self.spec.labels.iter().zip(probs).map(|(label, p)| (label.clone(), json!(p))).collect();
        json!({"label": self.spec.labels[best], "score": score, "scores": scores})
    }
}

impl Model for TextClassifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Text
    }

    fn infer(&mut self, batch: &[&Input]) -> Result<Vec<Value>> {
        let texts: Vec<&str> = batch
            .iter()
            .map(|input| match input {
                Input::Text(text) => Ok(text.as_str()),
                _ => Err(super::unexpected_input(&self.name, InputKind::Text)),
            })
            .collect::<Result<_>>()?;
        let probs = self.probabilities(&texts)?;
        Ok(probs.iter().map(|p| self.result_json(p)).collect())
    }
}

/// Sorts indices by token count and cuts them into groups whose padded size stays within
/// `MAX_PADDING_RATIO` of their real size.
pub fn length_groups(tokens: &[Vec<i64>]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..tokens.len()).collect();
    order.sort_by_key(|&i| tokens[i].len());
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut real = 0usize;
    for index in order {
        let len = tokens[index].len().max(1);
        // Sorted ascending, so the newcomer sets the group's width.
        let padded = (current.len() + 1) * len;
        if !current.is_empty() && padded as f32 > MAX_PADDING_RATIO * (real + len) as f32 {
            groups.push(std::mem::take(&mut current));
            real = 0;
        }
        current.push(index);
        real += len;
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens(lengths: &[usize]) -> Vec<Vec<i64>> {
        lengths.iter().map(|&n| vec![1; n]).collect()
    }

    #[test]
    fn groups_cover_every_index_once() {
        let tokens = lens(&[5, 40, 6, 7, 120, 41, 5]);
        let mut seen: Vec<usize> = length_groups(&tokens).concat();
        seen.sort();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn short_and_long_texts_are_not_padded_together() {
        let groups = length_groups(&lens(&[5, 120, 6, 118]));
        assert_eq!(groups, vec![vec![0, 2], vec![3, 1]]);
    }

    #[test]
    fn equal_lengths_form_one_group() {
        assert_eq!(length_groups(&lens(&[8; 32])).len(), 1);
    }

    #[test]
    fn softmax_sums_to_one() {
        let p = softmax(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > p[1] && p[1] > p[0]);
    }
}
