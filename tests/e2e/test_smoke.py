from tests.helpers import python_function


def test_create_and_invoke_round_trip(lam) -> None:  # type: ignore[no-untyped-def]
    python_function(lam, "smoke", "def handler(event, context):\n    return {'got': event}\n")
    response = lam.invoke(FunctionName="smoke", Payload=b'{"a": 1}')
    assert response["StatusCode"] == 200
    assert response["Payload"].read() == b'{"got": {"a": 1}}'
