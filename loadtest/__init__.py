"""Load tests for the audience service: locust scenario, wrk throughput ceiling, report runner (loadtest.run)."""
