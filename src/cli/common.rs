//! What several subcommands share: loading the configuration (the --config
//! file or the embedded defaults) and running a function with the store
//! open on a small runtime.
//!
//! Owns turning a configuration mistake into exit code 2. It never parses
//! arguments and never prints.

use std::path::PathBuf;

use anyhow::Context as _;
use fedge::config::Config;
use fedge::store::Store;

use super::failure::Failure;

/// The --config file, checked, or the embedded defaults without one.
pub fn load_config(path: &Option<PathBuf>) -> Result<Config, Failure> {
    match path {
        Some(p) => Config::load(p).map_err(|e| Failure::usage(e.0)),
        None => Ok(Config::default()),
    }
}

/// Opens the store on a small runtime and runs `f` with it.
pub fn with_store<F, Fut>(cfg: &Config, f: F) -> Result<(), Failure>
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let store = Store::open(&cfg.store.url)
            .await
            .map_err(|e| Failure::runtime(e.to_string()))?;
        let result = f(store.clone()).await;
        store.close().await;
        result
    })
}
