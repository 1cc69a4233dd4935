//! The TOML `migrate` prints: only the keys that differ from the defaults, so the operator sees
//! what their coturn file actually said, yet loading it gives exactly the imported [`Config`].

use ice_config::Config;
use toml::{Table, Value};

use super::{Import, Severity};

/// The import could not be written as TOML (a value TOML cannot hold).
#[derive(thiserror::Error, Debug)]
#[error("cannot write the configuration as TOML: {0}")]
pub struct RenderError(#[from] toml::ser::Error);

/// The config file equivalent to `import`, with a comment header naming `source` and what did
/// not carry over.
pub fn render_toml(import: &Import, source: &str) -> Result<String, RenderError> {
    let mut out = format!(
        "# turn-server config converted from the coturn file {source} by `turn-server migrate`.\n\
         # Only settings that differ from the defaults are listed; every key is explained in\n\
         # ice-config/config.example.toml. Check it with: turn-server --check-config --config FILE\n"
    );
    let ignored: Vec<String> = import
        .notes
        .iter()
        .filter(|n| n.severity == Severity::Warning)
        .filter_map(|n| Some(format!("{} (line {})", n.option.as_deref()?, n.line?)))
        .collect();
    if !ignored.is_empty() {
        out.push_str(&format!("# Read the warnings migrate printed about: {}.\n", ignored.join(", ")));
    }
    if let Some(log_file) = &import.log_file {
        out.push_str(&format!(
            "# coturn's log-file is a flag here, not a key: run with --log-file {}\n",
            log_file.display()
        ));
    }
    if import.config.relays.is_empty() {
        out.push_str("# The signaling service also needs [[relays]]: the host names clients connect to.\n");
    }
    out.push('\n');
    out.push_str(&minimal_toml(&import.config)?);
    Ok(out)
}

/// `cfg` as TOML without the keys that hold their default value.
pub fn minimal_toml(cfg: &Config) -> Result<String, RenderError> {
    let full = Table::try_from(cfg)?;
    let defaults = Table::try_from(Config::default())?;
    let changed = without_defaults(full, &defaults);
    // Bare keys must come before the first table header, or they would land inside that table.
    let (plain, tables): (Table, Table) = changed.into_iter().partition(|(_, v)| !v.is_table());
    let mut out = toml::to_string(&plain)?;
    for (name, table) in tables {
        if !out.is_empty() {
            out.push('\n');
        }
        let mut one = Table::new();
        one.insert(name, table);
        out.push_str(&toml::to_string(&one)?);
    }
    Ok(out)
}

fn without_defaults(values: Table, defaults: &Table) -> Table {
    values
        .into_iter()
        .filter_map(|(key, value)| match (value, defaults.get(&key)) {
            (Value::Table(sub), Some(Value::Table(default_sub))) => {
                let sub = without_defaults(sub, default_sub);
                (!sub.is_empty()).then_some((key, Value::Table(sub)))
            }
            (value, Some(default)) if value == *default => None,
            (value, _) => Some((key, value)),
        })
        .collect()
}
