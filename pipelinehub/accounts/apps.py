from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "pipelinehub.accounts"
    verbose_name = "Accounts and roles"
