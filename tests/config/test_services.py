"""The well-known services table and its lookups."""

from __future__ import annotations

import pytest

from rawsmtp.config._services import SERVICES, Service, lookup_service


@pytest.mark.parametrize(
    ("key", "host", "port", "secure"),
    [
        ("gmail", "smtp.gmail.com", 465, True),
        ("Google Mail", "smtp.gmail.com", 465, True),
        ("googlemail.com", "smtp.gmail.com", 465, True),
        ("alice@gmail.com", "smtp.gmail.com", 465, True),
        ("Outlook365", "smtp.office365.com", 587, False),
        ("hotmail", "smtp-mail.outlook.com", 587, False),
        ("outlook.com", "smtp-mail.outlook.com", 587, False),
        ("yahoo", "smtp.mail.yahoo.com", 465, True),
        ("iCloud", "smtp.mail.me.com", 587, False),
        ("me.com", "smtp.mail.me.com", 587, False),
        ("sendgrid", "smtp.sendgrid.net", 587, False),
        ("Mailgun", "smtp.mailgun.org", 465, True),
        ("postmark", "smtp.postmarkapp.com", 2525, False),
        ("SES", "email-smtp.us-east-1.amazonaws.com", 465, True),
        ("SES-EU-WEST-1", "email-smtp.eu-west-1.amazonaws.com", 465, True),
        ("ses_us_west_2", "email-smtp.us-west-2.amazonaws.com", 465, True),
        ("zoho", "smtp.zoho.com", 465, True),
        ("fastmail.fm", "smtp.fastmail.com", 465, True),
        ("gmx.de", "mail.gmx.com", 587, False),
        ("mail.ru", "smtp.mail.ru", 465, True),
        ("Yandex", "smtp.yandex.ru", 465, True),
        ("qq", "smtp.qq.com", 465, True),
        ("126", "smtp.126.com", 465, True),
        ("163.com", "smtp.163.com", 465, True),
        ("brevo", "smtp-relay.brevo.com", 587, False),
        ("SendinBlue", "smtp-relay.brevo.com", 587, False),
        ("mailjet", "in-v3.mailjet.com", 587, False),
        ("SparkPost", "smtp.sparkpostmail.com", 587, False),
        ("Mandrill", "smtp.mandrillapp.com", 587, False),
        ("godaddy", "smtpout.secureserver.net", 25, False),
        ("hot.ee", "mail.hot.ee", 25, False),
        ("OVH", "ssl0.ovh.net", 465, True),
        ("naver", "smtp.naver.com", 587, False),
        ("Proton Mail Bridge", "127.0.0.1", 1025, False),
        ("pm.me", "smtp.protonmail.ch", 587, False),
    ],
)
def test_lookup(key: str, host: str, port: int, secure: bool) -> None:
    service = lookup_service(key)
    assert service is not None
    assert (service.host, service.port, service.secure) == (host, port, secure)


@pytest.mark.parametrize("key", ["", "nope", "gmail.org", "mailee", "smtp.gmail.com", "@"])
def test_unknown(key: str) -> None:
    assert lookup_service(key) is None


def test_table_is_large_and_consistent() -> None:
    assert len(SERVICES) >= 30
    for name, service in SERVICES.items():
        assert isinstance(service, Service) and service.name == name
        assert service.host and 1 <= service.port <= 65535
        assert lookup_service(name) is service
        for key in (*service.aliases, *service.domains):
            assert lookup_service(key) is service
        # Implicit TLS belongs on 465; a secure entry elsewhere would be a typo.
        assert not service.secure or service.port == 465


def test_gmail_entry() -> None:
    gmail = SERVICES["Gmail"]
    assert gmail.aliases == ("Google Mail",)
    assert gmail.domains == ("gmail.com", "googlemail.com")


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        SERVICES["Evil"] = SERVICES["Gmail"]  # type: ignore[index]
