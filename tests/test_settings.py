import pytest

from noisy.settings import UserError, configure


def namespace():
    return {"EPOCHS": 300, "LR": 0.001, "DATA": "cifar10", "NOISE": True, "lower": 1, "_HIDDEN": 2}


def test_overrides_are_matched_case_insensitively_and_parsed():
    ns = namespace()
    resolved = configure(ns, ["--epochs=2", "--LR=1e-2", "--data=/tmp/cifar 10", "--noise=False"])
    assert ns["EPOCHS"] == 2 and ns["LR"] == 0.01 and ns["DATA"] == "/tmp/cifar 10"
    assert ns["NOISE"] is False
    assert resolved == {"epochs": 2, "lr": 0.01, "data": "/tmp/cifar 10", "noise": False}


def test_int_is_accepted_where_a_float_is_expected():
    ns = namespace()
    configure(ns, ["--lr=1"])
    assert ns["LR"] == 1.0 and isinstance(ns["LR"], float)


def test_value_containing_equals_sign_keeps_everything_after_the_first():
    ns = namespace()
    configure(ns, ["--data=a=b"])
    assert ns["DATA"] == "a=b"


def test_numeric_value_of_a_string_setting_stays_a_string():
    ns = namespace()
    configure(ns, ["--data=2024"])
    assert ns["DATA"] == "2024"


def test_unknown_name_is_rejected_with_the_valid_names():
    with pytest.raises(UserError, match=r"unknown setting --epoch; valid settings: --data, --epochs, --lr, --noise"):
        configure(namespace(), ["--epoch=3"])


@pytest.mark.parametrize("arg, message", [
    ("--epochs=2.5", r"--epochs expects int \(like 300\), got '2.5'"),
    ("--noise=maybe", r"--noise expects True or False, got 'maybe'"),
    ("--epochs", r"not of the form --name=value"),
    ("epochs=3", r"not of the form --name=value"),
])
def test_bad_values_are_rejected(arg, message):
    with pytest.raises(UserError, match=message):
        configure(namespace(), [arg])
