//! Logging and traces, in one place: `tracing` to stderr, filtered by `RUST_LOG` or the
//! config's `log`; spans over OTLP/HTTP (JSON) when `telemetry.otlp_endpoint` is set.

use std::sync::Mutex;
use std::time::Duration;

use oms_bus::trace::{self, DerivedIds};
use oms_config::TelemetryConfig;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::info;
use tracing_subscriber::EnvFilter;

/// How long finished spans wait to be sent together.
const EXPORT_DELAY: Duration = Duration::from_secs(1);

/// Every installed tracer provider, to flush at shutdown.
static PROVIDERS: Mutex<Vec<SdkTracerProvider>> = Mutex::new(Vec::new());

/// Installs the global subscriber; a second call (tests run many services in one process) is a no-op.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .try_init();
}

/// Sends `service`'s spans to `telemetry.otlp_endpoint` (`<endpoint>/v1/traces`), if set;
/// otherwise records none, at no cost.
pub fn traces(service: &'static str, config: &TelemetryConfig) -> anyhow::Result<()> {
    let endpoint = config.otlp_endpoint.trim().trim_end_matches('/');
    if endpoint.is_empty() {
        return Ok(());
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .build()?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(EXPORT_DELAY)
                .build(),
        )
        .build();
    let resource = Resource::builder_empty()
        .with_service_name(service)
        .with_attribute(opentelemetry::KeyValue::new("service.namespace", "oms"))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_id_generator(DerivedIds::default())
        .with_resource(resource)
        .build();
    trace::install(service, provider.tracer("oms"));
    PROVIDERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(provider);
    info!(%endpoint, "sending traces over OTLP");
    Ok(())
}

/// Sends the spans still waiting; at shutdown.
pub fn flush() {
    let providers = std::mem::take(&mut *PROVIDERS.lock().unwrap_or_else(|e| e.into_inner()));
    for provider in providers {
        let _ = provider.shutdown();
    }
}
