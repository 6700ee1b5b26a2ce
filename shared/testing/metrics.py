"""Reading a /metrics page in tests: scrape it over HTTP and sum the samples a test names."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass(frozen=True)
class Scraped:
    samples: list[Sample]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
        return sum(s.value for s in self.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    def has(self, name: str, **labels: str) -> bool:
        return any(s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
                   for s in self.samples)

    def families(self) -> set[str]:
        return {s.name for s in self.samples}


async def scrape(http: httpx.AsyncClient, url: str) -> Scraped:
    response = await http.get(url)
    assert response.status_code == 200, response.text
    return Scraped([sample for family in text_string_to_metric_families(response.text)
                    for sample in family.samples])
