"""The data contract (docs/design.md) in one place: topics, the event's fields and ranges, the 153 action types and
the three aggregates. The parts render their DDL and checks from this module or are tested against it, so a
change to the contract is a change here (plus the SQL that spells it out).
"""

from __future__ import annotations

from dataclasses import dataclass

RAW_TOPIC = "user_actions_topic"

# Event (JSON object, one per Kafka record, key = decimal user_id), in the order the job checks the fields.
EVENT_FIELDS = ("event_id", "user_id", "action_type", "timestamp", "metadata", "device_info")
MAX_USERS = 30_000_000  # user_id is 1..MAX_USERS
MAX_EVENT_ID_CHARS = 64

# The 153 mobile-app action types; the order is fixed so that an action's index is stable (the simulator's
# frequencies and screens per action are in producer/action_types.py).
ACTION_TYPES: tuple[str, ...] = (
    # app lifecycle and sessions
    "app_open", "app_close", "app_background", "app_foreground", "app_install", "app_update", "app_crash",
    "session_start", "session_end", "first_launch",
    # navigation and generic interaction
    "screen_view", "tab_switch", "back_press", "deep_link_open", "menu_open", "menu_close", "scroll", "swipe",
    "pull_to_refresh", "button_click", "link_click", "banner_click", "carousel_swipe", "modal_open", "modal_close",
    # account and authentication
    "sign_up_start", "sign_up_complete", "login", "login_failed", "logout", "password_reset_request",
    "password_reset_complete", "two_factor_prompt", "two_factor_success", "profile_view", "profile_edit",
    "avatar_upload", "account_delete", "email_verify",
    # search and discovery
    "search", "search_result_click", "search_filter_apply", "search_sort_change", "search_no_results",
    "voice_search", "barcode_scan", "category_browse", "recommendation_view", "recommendation_click",
    # commerce
    "product_view", "product_image_zoom", "product_share", "add_to_cart", "remove_from_cart", "cart_view",
    "add_to_wishlist", "remove_from_wishlist", "wishlist_view", "checkout_start", "shipping_info_add",
    "payment_info_add", "coupon_apply", "purchase_complete", "purchase_failed", "order_view", "order_cancel",
    "refund_request", "review_write", "review_read", "price_alert_set",
    # content and media
    "article_view", "video_play", "video_pause", "video_resume", "video_complete", "video_seek", "audio_play",
    "audio_pause", "podcast_subscribe", "image_view", "gallery_open", "story_view", "story_skip",
    "live_stream_join", "live_stream_leave", "download_start", "download_complete",
    # social
    "like", "unlike", "comment_post", "comment_delete", "share", "follow", "unfollow", "friend_request_send",
    "friend_request_accept", "invite_send", "message_send", "message_read", "group_join", "group_leave", "mention",
    # notifications and messaging channels
    "push_received", "push_open", "push_dismiss", "notification_center_open", "notification_settings_change",
    "in_app_message_view", "in_app_message_click", "email_link_open",
    # settings and permissions
    "settings_open", "language_change", "theme_change", "dark_mode_toggle", "permission_prompt", "permission_grant",
    "permission_deny", "location_enable", "biometric_enable", "privacy_settings_change",
    # monetisation and subscriptions
    "subscription_view", "subscription_start", "subscription_renew", "subscription_cancel", "trial_start",
    "trial_convert", "paywall_view", "paywall_dismiss", "in_app_purchase", "restore_purchases", "ad_impression",
    "ad_click", "ad_reward_earned",
    # engagement and gamification
    "achievement_unlock", "level_up", "daily_reward_claim", "streak_extend", "quiz_start", "quiz_complete",
    "poll_vote", "survey_start", "survey_complete", "rating_prompt_shown", "app_rating_submit",
    # help, onboarding and errors
    "help_center_open", "faq_view", "chat_support_start", "feedback_submit", "tutorial_start", "tutorial_complete",
    "tutorial_skip", "onboarding_complete", "error_shown",
)
ACTION_TYPE_SET: frozenset[str] = frozenset(ACTION_TYPES)
assert len(ACTION_TYPES) == 153 and len(ACTION_TYPE_SET) == 153, "the contract fixes 153 unique action types"


@dataclass(frozen=True)
class AggregateSpec:
    """One windowed aggregate: its Kafka topic and ClickHouse table share ``name``; rows are keyed by
    (window_start, window_end, *key_columns) and carry ``count_column`` and a ``version``."""

    name: str
    window_minutes: int
    key_columns: tuple[str, ...]
    count_column: str
    ttl_days: int  # ClickHouse TTL on window_start

    @property
    def columns(self) -> tuple[str, ...]:
        return ("window_start", "window_end", *self.key_columns, self.count_column, "version")


AGGREGATES: tuple[AggregateSpec, ...] = (
    AggregateSpec("user_aggregations", 120, ("user_id",), "total_actions", 365),
    AggregateSpec("user_action_aggregations", 120, ("user_id", "action_type"), "actions", 365),
    AggregateSpec("user_aggregations_realtime", 5, ("user_id",), "total_actions", 90),
)
AGGREGATE_TOPICS: tuple[str, ...] = tuple(a.name for a in AGGREGATES)
AGGREGATES_BY_NAME: dict[str, AggregateSpec] = {a.name: a for a in AGGREGATES}
