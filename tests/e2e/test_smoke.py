from pathlib import Path

from tests.helpers import Server, python_function


def test_create_and_invoke_round_trip(lam) -> None:  # type: ignore[no-untyped-def]
    python_function(lam, "smoke", "def handler(event, context):\n    return {'got': event}\n")
    response = lam.invoke(FunctionName="smoke", Payload=b'{"a": 1}')
    assert response["StatusCode"] == 200
    assert response["Payload"].read() == b'{"got": {"a": 1}}'


def test_the_default_relative_data_dir_works(tmp_path: Path) -> None:
    """`make serve` runs with `--data-dir .lamina`, relative to where it starts: code and
    scratch paths must still resolve inside isolated environments."""
    server = Server(Path(".lamina"), cwd=tmp_path).start()
    try:
        client = server.client()
        python_function(client, "relative", "def handler(event, context):\n    return event\n")
        response = client.invoke(FunctionName="relative", Payload=b'{"a": 1}')
        assert "FunctionError" not in response, response["Payload"].read()
        assert response["Payload"].read() == b'{"a": 1}'
        assert (tmp_path / ".lamina" / "lamina.db").is_file()
    finally:
        server.stop()
