//! `tidal models list | describe | verify`: what `tidal serve` would load, checked before it serves.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use tidal::config::{ServeConfig, ServeOverrides};
use tidal::tools;

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Every manifest (built-in, or those in --manifest-dir) with its kind, version, licence and
    /// whether its files are installed.
    List(ModelArgs),
    /// A manifest, its files and each ONNX file's inputs and outputs.
    #[command(after_help = "Example:\n  tidal models describe sentiment")]
    Describe {
        /// Model name (as in `tidal models list`).
        name: String,
        #[command(flatten)]
        dirs: ModelArgs,
    },
    /// Load a model as a worker does and run it on a sample request; prints the result and the
    /// load and inference times. Exits 1 when anything fails, with the reason.
    #[command(after_help = "Examples:
  tidal models verify sentiment
  tidal models verify ocr --input receipt.png               # a raw JPEG/PNG
  tidal models verify face-match --input pair.json          # {\"image_a\": \"<base64>\", \"image_b\": \"<base64>\"}
  tidal models verify sentiment --manifest-dir ./my-models  # your own export of the same family")]
    Verify {
        /// Model name (as in `tidal models list`).
        name: String,
        /// A request value to run: a JSON request, or a JPEG/PNG for single-image models
        /// (default: a built-in sample).
        #[arg(long)]
        input: Option<PathBuf>,
        #[command(flatten)]
        dirs: ModelArgs,
    },
}

/// Where `tidal models` finds manifests, model files and ONNX Runtime (as `tidal serve` would).
#[derive(Args)]
pub struct ModelArgs {
    /// Serve configuration to take the folders and input limits from.
    #[arg(long, short, env = "TIDAL_CONFIG")]
    config: Option<PathBuf>,
    /// Folder of manifests (`<name>.toml`); default: the built-in ones.
    #[arg(long, env = "TIDAL_MANIFEST_DIR")]
    manifest_dir: Option<PathBuf>,
    /// Folder the manifests' file paths resolve against.
    #[arg(long, env = "TIDAL_MODEL_DIR")]
    model_dir: Option<PathBuf>,
}

impl ModelArgs {
    fn into_config(self) -> tidal::Result<ServeConfig> {
        let overrides =
            ServeOverrides { manifest_dir: self.manifest_dir, model_dir: self.model_dir, ..ServeOverrides::default() };
        Ok(ServeConfig::load(self.config.as_deref())?.with_overrides(overrides))
    }
}

pub fn run(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::List(dirs) => list(dirs.into_config()?),
        ModelsCommand::Describe { name, dirs } => {
            let config = dirs.into_config()?;
            let text = tools::describe(
                &name,
                config.manifest_dir.as_deref(),
                &config.model_dir(),
                &config.onnxruntime_library(),
            )?;
            print!("{text}");
            Ok(())
        }
        ModelsCommand::Verify { name, input, dirs } => verify(&name, input, dirs.into_config()?),
    }
}

fn list(config: ServeConfig) -> anyhow::Result<()> {
    let model_dir = config.model_dir();
    println!("{:<14} {:<20} {:<22} {:<12} FILES", "NAME", "KIND", "VERSION", "LICENCE");
    for model in tools::list(config.manifest_dir.as_deref(), &model_dir)? {
        let files = match model.missing.as_slice() {
            [] => "installed".to_string(),
            missing => format!("{} missing (run scripts/setup.sh)", missing.len()),
        };
        println!("{:<14} {:<20} {:<22} {:<12} {files}", model.name, model.kind, model.version, model.license);
    }
    println!("model files under {}", model_dir.display());
    Ok(())
}

fn verify(name: &str, input: Option<PathBuf>, config: ServeConfig) -> anyhow::Result<()> {
    let sample = match &input {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?),
        None => None,
    };
    let verification = tools::verify(
        name,
        config.manifest_dir.as_deref(),
        &config.model_dir(),
        &config.onnxruntime_library(),
        sample,
        &config.limits,
    )?;
    println!("{}", serde_json::to_string_pretty(&verification)?);
    eprintln!(
        "{name} {}: loaded in {:.0} ms, answered the sample in {:.1} ms",
        verification.version,
        verification.load.as_secs_f64() * 1e3,
        verification.infer.as_secs_f64() * 1e3
    );
    Ok(())
}
