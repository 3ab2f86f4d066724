//! `echo`: no inference, the text's length (in characters) as the result. With the model taken
//! out, what remains is the pipeline's own cost (consume, JSON, produce, transactions): `tidal
//! bench --model echo` measures it against the same echo in Kafka Streams.

use serde_json::{json, Value};

use super::{unexpected_input, Manifest, Model};
use crate::codec::{Input, InputKind};
use crate::error::Result;

/// The echo "model".
pub struct Echo {
    name: String,
    version: String,
}

impl Echo {
    pub fn load(manifest: &Manifest) -> Self {
        Echo { name: manifest.name.clone(), version: manifest.version.clone() }
    }
}

impl Model for Echo {
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
        batch
            .iter()
            .map(|input| match input {
                Input::Text(text) => Ok(json!({ "length": text.chars().count() })),
                _ => Err(unexpected_input(&self.name, InputKind::Text)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_length_in_characters() {
        let mut echo = Echo::load(&Manifest::find("echo", None).unwrap());
        let (a, b) = (Input::Text("héllo".into()), Input::Text(String::new()));
        assert_eq!(echo.infer(&[&a, &b]).unwrap(), vec![json!({"length": 5}), json!({"length": 0})]);
    }
}
