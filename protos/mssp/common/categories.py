"""Built-in destination categories shipped with the agent (the one source of these lists).

The agent enforces a category by resolving its domains through dnsmasq (nftset fills the
category's nft sets), so a domain here also covers its subdomains. A tenant policy may extend a
category or add one: only those extensions travel in the policy bundle (``PolicyBundle.categories``).
Lists are canonical: lower-case, IDNA, no trailing dot.
"""

from __future__ import annotations

import re

# A category name as used in policies, nft set names and telemetry dimensions.
CATEGORY_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")

BUILTIN_CATEGORIES: dict[str, tuple[str, ...]] = {
    "cloud_storage": (
        "dropbox.com",
        "dropboxusercontent.com",
        "box.com",
        "boxcloud.com",
        "drive.google.com",
        "docs.google.com",
        "onedrive.live.com",
        "1drv.ms",
        "mega.nz",
        "mega.io",
        "wetransfer.com",
        "icloud.com",
        "pcloud.com",
        "sync.com",
        "mediafire.com",
        "tresorit.com",
        "idrive.com",
        "backblazeb2.com",
    ),
    "ai_tools": (
        "openai.com",
        "chatgpt.com",
        "oaiusercontent.com",
        "claude.ai",
        "anthropic.com",
        "gemini.google.com",
        "bard.google.com",
        "aistudio.google.com",
        "perplexity.ai",
        "copilot.microsoft.com",
        "mistral.ai",
        "chat.mistral.ai",
        "deepseek.com",
        "poe.com",
        "character.ai",
        "huggingface.co",
        "you.com",
        "x.ai",
        "grok.com",
    ),
    "file_sharing": (
        "wetransfer.com",
        "we.tl",
        "sendspace.com",
        "transfer.sh",
        "file.io",
        "gofile.io",
        "anonfiles.com",
        "zippyshare.com",
        "4shared.com",
        "rapidgator.net",
        "pixeldrain.com",
        "filemail.com",
        "fromsmash.com",
        "pastebin.com",
        "ghostbin.com",
        "catbox.moe",
    ),
    "social_media": (
        "facebook.com",
        "fbcdn.net",
        "instagram.com",
        "cdninstagram.com",
        "twitter.com",
        "x.com",
        "twimg.com",
        "tiktok.com",
        "tiktokcdn.com",
        "linkedin.com",
        "reddit.com",
        "snapchat.com",
        "pinterest.com",
        "tumblr.com",
        "threads.net",
        "bsky.app",
        "vk.com",
    ),
    "remote_access": (
        "anydesk.com",
        "teamviewer.com",
        "logmein.com",
        "gotomypc.com",
        "splashtop.com",
        "rustdesk.com",
        "remotedesktop.google.com",
        "screenconnect.com",
        "remoteutilities.com",
        "parsec.app",
        "realvnc.com",
        "assist.zoho.com",
        "supremocontrol.com",
        "ammyy.com",
        "ngrok.com",
        "ngrok.io",
    ),
    "crypto_mining": (
        "coinhive.com",
        "coin-hive.com",
        "cryptoloot.pro",
        "minergate.com",
        "nanopool.org",
        "2miners.com",
        "f2pool.com",
        "ethermine.org",
        "nicehash.com",
        "supportxmr.com",
        "moneroocean.stream",
        "hashvault.pro",
        "minexmr.com",
        "herominers.com",
        "unmineable.com",
        "c3pool.com",
    ),
}


def builtin_category_names() -> list[str]:
    """Sorted names of the shipped categories."""
    return sorted(BUILTIN_CATEGORIES)
