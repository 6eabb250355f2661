"""What a text must hold for each of redaction_forms' patterns to match in it: redaction.redact skips a pattern
in a text without one of its words, as a pattern whose match begins with no fixed character is tried at every
position of the text.
"""

import re

from chipadapt.curation.redaction_forms import (
    ASSIGNMENTS,
    AWS_NAMED,
    AWS_SECRET,
    BASIC_AUTH,
    CONTEXT_FORMATS,
    DOCKER_AUTH,
    EMAIL,
    ESCAPED_LIST,
    FORMS,
    K8S_SECRET_FLOW,
    K8S_SECRET_MAP,
    PRIVATE_KEY_BASE64,
    TOKEN_FORMATS,
    URL_PASSWORD,
    YAML_BLOCK,
    YAML_FLOW_LIST,
    YAML_LIST,
)

# What a text must hold, lower-cased, for a pattern to match in it (any one of them): a pattern whose match
# begins with no fixed character is tried at every position of the text, and a document of a megabyte of
# blanks, or of anything without a credential's word, took seconds for nothing. Lower-cased: a name's match is
# case-blind. Only where the text is ASCII (redaction.redact): case-blind `s` also matches `ſ`, whose lower case
# is no `s`.
_NAME_WORDS = ("key", "secret", "pass", "pw", "token", "credential")  # every one of redaction_forms.WORDS holds one
NEEDS: dict[re.Pattern, tuple[str, ...]] = {
    EMAIL: ("@",),
    PRIVATE_KEY_BASE64: ("ls0tls1crudjti",),
    URL_PASSWORD: ("://",),
    K8S_SECRET_MAP: ("data",),
    K8S_SECRET_FLOW: ("data",),
    YAML_BLOCK: _NAME_WORDS,
    YAML_LIST: _NAME_WORDS,
    YAML_FLOW_LIST: _NAME_WORDS,
    ESCAPED_LIST: _NAME_WORDS,
    AWS_SECRET: tuple("0123456789"),
    AWS_NAMED: ("aws",),
    DOCKER_AUTH: ("auth",),
    BASIC_AUTH["basic_auth_curl"]: ("curl",),
    BASIC_AUTH["basic_auth_user"]: ("user",),
    **{p: _NAME_WORDS for p in [*ASSIGNMENTS.values(), *FORMS.values()]},
    ASSIGNMENTS["mysql_password"]: ("mysql",),
    ASSIGNMENTS["sshpass_password"]: ("sshpass",),
    ASSIGNMENTS["registry_login_password"]: ("login",),
    FORMS["login_password"]: ("login",),
    TOKEN_FORMATS["aws_access_key"]: ("akia", "asia"),
    TOKEN_FORMATS["github_token"]: ("gh", "github_pat_"),
    TOKEN_FORMATS["gitlab_token"]: ("glpat-",),
    TOKEN_FORMATS["slack_token"]: ("xox", "xapp-"),
    TOKEN_FORMATS["stripe_key"]: ("k_live_", "k_test_"),
    TOKEN_FORMATS["google_api_key"]: ("aiza",),
    TOKEN_FORMATS["huggingface_token"]: ("hf_",),
    TOKEN_FORMATS["openai_key"]: ("sk-",),
    TOKEN_FORMATS["docker_config"]: ("eyjhdxrocyi6",),
    TOKEN_FORMATS["jwt"]: ("eyj",),
    CONTEXT_FORMATS["slack_webhook"]: ("hooks.slack.com/services/",),
    CONTEXT_FORMATS["docker_config"]: (".docker",),
    CONTEXT_FORMATS["authorization"]: ("authorization",),
}
