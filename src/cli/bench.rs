//! `tidal bench`: its options are the library's `BenchConfig`, parsed as they are.

pub use tidal::bench::BenchConfig as BenchArgs;

pub fn run(config: BenchArgs) -> anyhow::Result<()> {
    let report = tidal::bench::run(&config)?;
    println!("\n{}", report.table());
    println!("report: {}  chart: {}", config.out.join("report.json").display(), config.out.join("bench.png").display());
    Ok(())
}
