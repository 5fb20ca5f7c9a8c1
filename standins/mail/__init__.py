"""SMTP sink (aiosmtpd) that records parsed mails for assertions."""

from standins.mail.sink import Mail, MailSink, parse_mail

__all__ = ["Mail", "MailSink", "parse_mail"]
