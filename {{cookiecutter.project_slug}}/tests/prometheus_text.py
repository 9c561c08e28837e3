"""`/metrics` text read back as a table of samples, for exact assertions."""

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of `text`, by sample name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, sample: str, /, **labels: str) -> float:
    """The value of one sample; 0 when it is not there (a series nothing created yet)."""
    return samples.get((sample, frozenset(labels.items())), 0.0)


def requests(samples: Samples, method: str, route: str, status: int) -> float:
    """`http_requests_total` of one method, route template and status."""
    return value(samples, "http_requests_total", method=method, route=route, status=str(status))


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    """Every value `label` takes in the samples called `name`."""
    return {dict(labels)[label] for sample, labels in samples if sample == name}
