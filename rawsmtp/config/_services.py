"""Well-known mail services: a name (or alias, or mail domain) to host, port and TLS mode.

The table follows Nodemailer's well-known services list, so ``service="gmail"`` means the same
server in both. It is data only; :func:`rawsmtp.config._options.make_options` decides how a service's
settings combine with options given explicitly (explicit ones win).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["SERVICES", "Service", "lookup_service"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    """One well-known service. ``secure`` means implicit TLS from the first byte."""

    name: str
    host: str
    port: int
    secure: bool = False
    aliases: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    # A few servers advertise mechanisms they then refuse; Nodemailer pins LOGIN for them.
    auth_method: str | None = None
    require_tls: bool = False


def _ses(region: str) -> Service:
    # Amazon SES has one endpoint per region, all on the same port and TLS mode.
    return Service(
        name=f"SES-{region.upper()}",
        host=f"email-smtp.{region}.amazonaws.com",
        port=465,
        secure=True,
    )


_TABLE: tuple[Service, ...] = (
    Service(name="126", host="smtp.126.com", port=465, secure=True, domains=("126.com",)),
    Service(name="163", host="smtp.163.com", port=465, secure=True, domains=("163.com",)),
    Service(
        name="1und1",
        host="smtp.1und1.de",
        port=465,
        secure=True,
        auth_method="LOGIN",
        aliases=("1&1",),
    ),
    Service(name="Aliyun", host="smtp.aliyun.com", port=465, secure=True, domains=("aliyun.com",)),
    Service(name="AOL", host="smtp.aol.com", port=587, domains=("aol.com",)),
    Service(
        name="Bluewin", host="smtpauths.bluewin.ch", port=465, secure=True, domains=("bluewin.ch",)
    ),
    Service(name="DebugMail", host="debugmail.io", port=25),
    Service(
        name="ElasticEmail",
        host="smtp.elasticemail.com",
        port=465,
        secure=True,
        aliases=("Elastic Email",),
    ),
    Service(name="Ethereal", host="smtp.ethereal.email", port=587, aliases=("ethereal.email",)),
    Service(
        name="FastMail",
        host="smtp.fastmail.com",
        port=465,
        secure=True,
        domains=("fastmail.fm", "fastmail.com"),
    ),
    Service(
        name="ForwardEmail",
        host="smtp.forwardemail.net",
        port=465,
        secure=True,
        aliases=("FE", "Forward Email"),
        domains=("forwardemail.net",),
    ),
    Service(name="GandiMail", host="mail.gandi.net", port=587, aliases=("Gandi", "Gandi Mail")),
    Service(
        name="Gmail",
        host="smtp.gmail.com",
        port=465,
        secure=True,
        aliases=("Google Mail",),
        domains=("gmail.com", "googlemail.com"),
    ),
    Service(name="GMX", host="mail.gmx.com", port=587, domains=("gmx.com", "gmx.net", "gmx.de")),
    Service(name="Godaddy", host="smtpout.secureserver.net", port=25),
    Service(name="GodaddyAsia", host="smtp.asia.secureserver.net", port=25),
    Service(name="GodaddyEurope", host="smtp.europe.secureserver.net", port=25),
    Service(name="hot.ee", host="mail.hot.ee", port=25, domains=("hot.ee",)),
    Service(
        name="Hotmail",
        host="smtp-mail.outlook.com",
        port=587,
        aliases=("Outlook", "Outlook.com", "Hotmail.com"),
        domains=("hotmail.com", "outlook.com", "live.com"),
    ),
    Service(
        name="iCloud",
        host="smtp.mail.me.com",
        port=587,
        aliases=("Me", "Mac"),
        domains=("me.com", "mac.com", "icloud.com"),
    ),
    Service(
        name="Infomaniak",
        host="mail.infomaniak.com",
        port=587,
        domains=("ik.me", "ikmail.com", "etik.com"),
    ),
    Service(name="mail.ee", host="smtp.mail.ee", port=25, domains=("mail.ee",)),
    Service(name="Mail.ru", host="smtp.mail.ru", port=465, secure=True, domains=("mail.ru",)),
    Service(name="Mailcatch.app", host="sandbox-smtp.mailcatch.app", port=2525),
    Service(name="Maildev", host="127.0.0.1", port=1025),
    Service(name="Mailgun", host="smtp.mailgun.org", port=465, secure=True),
    Service(name="Mailjet", host="in-v3.mailjet.com", port=587),
    Service(name="Mailosaur", host="mailosaur.io", port=25),
    Service(name="Mailtrap", host="live.smtp.mailtrap.io", port=587),
    Service(name="Mandrill", host="smtp.mandrillapp.com", port=587, aliases=("Mailchimp",)),
    Service(name="Naver", host="smtp.naver.com", port=587, domains=("naver.com",)),
    Service(name="One", host="send.one.com", port=465, secure=True, aliases=("One.com",)),
    Service(
        name="OpenMailBox",
        host="smtp.openmailbox.org",
        port=465,
        secure=True,
        aliases=("OMB", "openmailbox.org"),
    ),
    Service(name="Outlook365", host="smtp.office365.com", port=587, aliases=("Office365",)),
    Service(name="OVH", host="ssl0.ovh.net", port=465, secure=True),
    Service(name="Postmark", host="smtp.postmarkapp.com", port=2525, aliases=("PostmarkApp",)),
    Service(
        name="Proton",
        host="smtp.protonmail.ch",
        port=587,
        require_tls=True,
        aliases=("ProtonMail", "Proton.me", "Protonmail.com", "Protonmail.ch"),
        domains=("proton.me", "protonmail.com", "pm.me", "protonmail.ch"),
    ),
    # The desktop Bridge listens on loopback and speaks STARTTLS with its own certificate.
    Service(name="ProtonBridge", host="127.0.0.1", port=1025, aliases=("Proton Mail Bridge",)),
    Service(name="qiye.aliyun", host="smtp.mxhichina.com", port=465, secure=True),
    Service(name="QQ", host="smtp.qq.com", port=465, secure=True, domains=("qq.com",)),
    Service(
        name="QQex",
        host="smtp.exmail.qq.com",
        port=465,
        secure=True,
        aliases=("QQ Enterprise",),
        domains=("exmail.qq.com",),
    ),
    Service(name="Resend", host="smtp.resend.com", port=465, secure=True),
    Service(name="SendCloud", host="smtp.sendcloud.net", port=2525),
    Service(name="SendGrid", host="smtp.sendgrid.net", port=587),
    Service(name="SendinBlue", host="smtp-relay.brevo.com", port=587, aliases=("Brevo",)),
    Service(name="SendPulse", host="smtp-pulse.com", port=465, secure=True),
    Service(name="SES", host="email-smtp.us-east-1.amazonaws.com", port=465, secure=True),
    *(
        _ses(region)
        for region in (
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
            "ca-central-1",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
            "eu-central-1",
            "eu-north-1",
            "eu-south-1",
            "ap-south-1",
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-northeast-3",
            "ap-southeast-1",
            "ap-southeast-2",
            "sa-east-1",
            "me-south-1",
            "af-south-1",
        )
    ),
    Service(
        name="Seznam",
        host="smtp.seznam.cz",
        port=465,
        secure=True,
        aliases=("Seznam Email",),
        domains=("seznam.cz", "email.cz", "post.cz", "spoluzaci.cz"),
    ),
    Service(
        name="SparkPost",
        host="smtp.sparkpostmail.com",
        port=587,
        aliases=("SparkPost Mail",),
        domains=("sparkpost.com",),
    ),
    Service(name="Tipimail", host="smtp.tipimail.com", port=587),
    Service(
        name="Yahoo",
        host="smtp.mail.yahoo.com",
        port=465,
        secure=True,
        domains=("yahoo.com", "ymail.com"),
    ),
    Service(
        name="Yandex",
        host="smtp.yandex.ru",
        port=465,
        secure=True,
        domains=("yandex.ru", "yandex.com", "ya.ru"),
    ),
    Service(
        name="Zoho",
        host="smtp.zoho.com",
        port=465,
        secure=True,
        auth_method="LOGIN",
        domains=("zoho.com", "zohomail.com"),
    ),
)

SERVICES: Mapping[str, Service] = MappingProxyType({service.name: service for service in _TABLE})

# Names and aliases are compared without case, spaces, hyphens or underscores, so "google mail",
# "Google-Mail" and "GOOGLEMAIL" are all Gmail; dots stay significant ("mail.ee" is not "mailee").
_SEPARATORS = re.compile(r"[\s_-]+")


def _key(text: str) -> str:
    return _SEPARATORS.sub("", text).lower()


def _index() -> dict[str, Service]:
    index: dict[str, Service] = {}
    for service in _TABLE:
        for key in (service.name, *service.aliases, *service.domains):
            previous = index.setdefault(_key(key), service)
            # A key shared by two services would make lookups depend on table order.
            assert previous is service, f"{key!r} names both {previous.name} and {service.name}"
    return index


_INDEX = _index()


def lookup_service(key: str) -> Service | None:
    """The service named ``key`` (a name, an alias, a mail domain or an address at one)."""
    if "@" in key:
        key = key.rpartition("@")[2]
    return _INDEX.get(_key(key))
