"""The series Prometheus itself adds to every scraped target (`up`, `scrape_*`): no exporter describes them, and
they exist wherever a namespace's metrics are scraped, so validation always knows them. Plain data, free of pandas
and pydantic, because `metrics-index validate` reads it."""

SCRAPE_SERIES_FIELDS: dict[str, tuple[str, str, str]] = {
    # name: (type, help, unit)
    "up": ("gauge", "1 if the target's last scrape succeeded, 0 if it failed.", ""),
    "scrape_duration_seconds": ("gauge", "Duration of the target's last scrape.", "seconds"),
    "scrape_samples_scraped": ("gauge", "Samples the target exposed in its last scrape.", ""),
    "scrape_samples_post_metric_relabeling": (
        "gauge",
        "Samples remaining after metric relabeling in the target's last scrape.",
        "",
    ),
    "scrape_series_added": ("gauge", "New series in the target's last scrape.", ""),
    "scrape_timeout_seconds": ("gauge", "The configured scrape timeout of the target.", "seconds"),
    "scrape_sample_limit": ("gauge", "The configured sample limit of the target.", ""),
    "scrape_body_size_bytes": ("gauge", "Uncompressed size of the last scrape response.", "bytes"),
}
