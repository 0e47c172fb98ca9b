"""The generating parameters of the synthetic world: latent segments and vocabularies.

These are the ground truth later stages are measured against; they are written to
``truth/parameters.json`` with every generated data set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class SegmentSpec:
    """A latent behavioural segment.

    BG/NBD rates are per day: purchase rate lambda ~ Gamma(r, rate alpha), dropout
    probability after each repeat purchase p ~ Beta(a, b). Spend per transaction
    z ~ Gamma(p_shape, rate nu) with nu ~ Gamma(q, rate v) (Gamma-Gamma).
    """

    name: str
    share: float
    r: float
    alpha: float
    a: float
    b: float
    p: float
    q: float
    v: float
    discount_share: float
    cogs_ratio: float
    support_per_30d: float
    unresolved_rate: float
    active_day_share: float
    sessions_mean: float
    features_mean: float
    touches_per_30d: float
    category_weights: tuple[float, ...]
    channel_weights: tuple[float, ...]
    support_channel_weights: tuple[float, ...]
    company_size_weights: tuple[float, ...]
    industry_weights: tuple[float, ...]
    plan_weights: tuple[float, ...]


PRODUCT_CATEGORIES = ("software", "services", "training", "hardware", "support_plan")
SALES_CHANNELS = ("online", "sales_rep", "partner", "app")
SUPPORT_CHANNELS = ("phone", "email", "chat")
SUPPORT_COST_PER_MINUTE = {"phone": 1.20, "email": 0.45, "chat": 0.70}
TOUCH_CHANNELS = ("direct", "search", "linkedin", "webinar", "referral", "industry_publication")
TOUCH_COST = {
    "direct": 0.0,
    "search": 2.5,
    "linkedin": 6.0,
    "webinar": 12.0,
    "referral": 1.0,
    "industry_publication": 8.0,
}
FUNNEL_STAGES = ("visit", "signup", "trial", "paid")
COMPANY_SIZES = ("micro", "small", "medium", "large", "enterprise")
INDUSTRIES = (
    "software",
    "fintech",
    "retail",
    "manufacturing",
    "healthcare",
    "education",
    "public_sector",
    "media",
)
PLANS = ("free", "starter", "pro", "business", "enterprise")
REGIONS = ("London", "South East", "North West", "Scotland", "Midlands", "Wales", "South West")
ACQUISITION_CHANNELS = TOUCH_CHANNELS
LIFECYCLE_STAGES = ("activation", "growth", "maturity", "retention", "dormant")
DECISION_MAKER_LEVELS = ("individual", "manager", "director", "c_level")
AGE_BANDS = ("under_35", "35_to_50", "over_50")
SIZE_BANDS = ("small_co", "mid_co", "large_co")
# Legacy personas: what marketing used before, drawn from demographics (age band x size
# band), not from behaviour.
LEGACY_PERSONAS = (
    "Startup Hustler",
    "Growth Manager",
    "Corporate Newcomer",
    "Seasoned Founder",
    "Operations Lead",
    "Department Head",
    "Lifestyle Owner",
    "Veteran Consultant",
    "Executive Sponsor",
)
# Industries the biased investment score over-rates (prestige, size), whatever they return.
OVERRATED_INDUSTRIES = ("public_sector", "education", "healthcare")

SEGMENTS: tuple[SegmentSpec, ...] = (
    SegmentSpec(
        name="core",
        share=0.08,
        r=2.0,
        alpha=40.0,
        a=0.4,
        b=8.0,
        p=6.0,
        q=4.0,
        v=180.0,
        discount_share=0.04,
        cogs_ratio=0.30,
        support_per_30d=0.12,
        unresolved_rate=0.05,
        active_day_share=0.55,
        sessions_mean=4.0,
        features_mean=12.0,
        touches_per_30d=0.8,
        category_weights=(0.45, 0.25, 0.10, 0.05, 0.15),
        channel_weights=(0.35, 0.40, 0.15, 0.10),
        support_channel_weights=(0.30, 0.40, 0.30),
        company_size_weights=(0.02, 0.10, 0.33, 0.35, 0.20),
        industry_weights=(0.32, 0.28, 0.06, 0.12, 0.08, 0.02, 0.02, 0.10),
        plan_weights=(0.0, 0.05, 0.25, 0.40, 0.30),
    ),
    SegmentSpec(
        name="steady",
        share=0.22,
        r=1.5,
        alpha=70.0,
        a=0.6,
        b=6.0,
        p=5.0,
        q=4.0,
        v=66.0,
        discount_share=0.08,
        cogs_ratio=0.38,
        support_per_30d=0.25,
        unresolved_rate=0.10,
        active_day_share=0.28,
        sessions_mean=2.5,
        features_mean=7.0,
        touches_per_30d=1.0,
        category_weights=(0.35, 0.20, 0.15, 0.15, 0.15),
        channel_weights=(0.50, 0.20, 0.15, 0.15),
        support_channel_weights=(0.30, 0.40, 0.30),
        company_size_weights=(0.08, 0.30, 0.35, 0.20, 0.07),
        industry_weights=(0.18, 0.14, 0.16, 0.16, 0.12, 0.08, 0.06, 0.10),
        plan_weights=(0.05, 0.30, 0.40, 0.20, 0.05),
    ),
    SegmentSpec(
        name="occasional",
        share=0.40,
        r=0.8,
        alpha=120.0,
        a=0.8,
        b=3.0,
        p=4.0,
        q=5.0,
        v=55.0,
        discount_share=0.10,
        cogs_ratio=0.45,
        support_per_30d=0.15,
        unresolved_rate=0.12,
        active_day_share=0.08,
        sessions_mean=1.5,
        features_mean=3.0,
        touches_per_30d=0.6,
        category_weights=(0.25, 0.10, 0.30, 0.25, 0.10),
        channel_weights=(0.65, 0.05, 0.10, 0.20),
        support_channel_weights=(0.20, 0.50, 0.30),
        company_size_weights=(0.40, 0.35, 0.15, 0.07, 0.03),
        industry_weights=(0.10, 0.06, 0.28, 0.14, 0.10, 0.12, 0.05, 0.15),
        plan_weights=(0.40, 0.45, 0.12, 0.03, 0.0),
    ),
    SegmentSpec(
        name="costly",
        share=0.30,
        r=1.0,
        alpha=80.0,
        a=0.6,
        b=4.0,
        p=4.0,
        q=5.0,
        v=45.0,
        discount_share=0.28,
        cogs_ratio=0.50,
        support_per_30d=1.10,
        unresolved_rate=0.30,
        active_day_share=0.18,
        sessions_mean=2.0,
        features_mean=4.0,
        touches_per_30d=1.6,
        category_weights=(0.15, 0.35, 0.20, 0.10, 0.20),
        channel_weights=(0.25, 0.45, 0.25, 0.05),
        support_channel_weights=(0.65, 0.20, 0.15),
        company_size_weights=(0.05, 0.15, 0.25, 0.30, 0.25),
        industry_weights=(0.05, 0.03, 0.10, 0.10, 0.22, 0.22, 0.23, 0.05),
        plan_weights=(0.05, 0.20, 0.35, 0.30, 0.10),
    ),
)


@dataclass(frozen=True)
class BotSpec:
    """Test and bot accounts: heavy usage on a few days, no purchases."""

    name: str = "bot"
    active_days_min: int = 2
    active_days_max: int = 8
    sessions_mean: float = 250.0
    events_per_session: float = 60.0
    features_mean: float = 25.0


BOTS = BotSpec()

FIRST_NAMES: dict[str, str | None] = {
    "Robert": "Bob",
    "Elizabeth": "Liz",
    "William": "Bill",
    "Margaret": "Maggie",
    "James": "Jim",
    "Katherine": "Kate",
    "Richard": "Dick",
    "Jennifer": "Jen",
    "Michael": "Mike",
    "Rebecca": "Becky",
    "Thomas": "Tom",
    "Alexandra": "Alex",
    "Christopher": "Chris",
    "Victoria": "Vicky",
    "Daniel": "Dan",
    "Samantha": "Sam",
    "Matthew": "Matt",
    "Jessica": "Jess",
    "Anthony": "Tony",
    "Patricia": "Pat",
    "Joseph": "Joe",
    "Susan": "Sue",
    "David": "Dave",
    "Deborah": "Debbie",
    "Edward": "Ed",
    "Catherine": "Cathy",
    "Benjamin": "Ben",
    "Abigail": "Abby",
    "Nicholas": "Nick",
    "Frederick": "Fred",
    "Amelia": "Millie",
    "Oliver": "Olly",
    "Charlotte": "Lottie",
    "Jonathan": "Jon",
    "Zoë": None,
    "Siobhán": None,
    "Émile": None,
    "Olivia": None,
    "Priya": None,
    "Mohammed": None,
    "Aisha": None,
    "Chen": None,
    "Fatima": None,
    "Kwame": None,
    "Ingrid": None,
    "Lucía": None,
    "Raj": None,
    "Hannah": None,
}
LAST_NAMES = (
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Patel",
    "Khan",
    "Lewis",
    "James",
    "Phillips",
    "Mason",
    "Mitchell",
    "Rose",
    "Davis",
    "Rodriguez",
    "Cox",
    "Alexander",
    "Morgan",
    "Moore",
    "Mills",
    "King",
    "Scott",
    "Baker",
    "Adams",
    "Nelson",
    "Hill",
    "Campbell",
    "O'Brien",
    "Müller",
    "Nguyen",
    "Kowalski",
    "Okafor",
    "Fernández",
    "McDonald",
    "Harris",
    "Turner",
    "Cooper",
    "Ward",
    "Morris",
    "Hughes",
    "Edwards",
    "Murphy",
    "Bell",
    "Kelly",
    "Price",
    "Bennett",
    "Gray",
    "Ross",
    "Reid",
    "Fraser",
    "Lloyd",
    "Ellis",
)
# Names beyond the common head above. A real customer base of hundreds of thousands holds
# tens of thousands of surnames, so most full names belong to one or a few people; with
# the head alone (48 x 67 = 3,216 full names) every name was shared by ~150 people at the
# reference preset and names could not tell anybody apart. A person's first name comes
# from the head with probability FIRST_NAME_HEAD_SHARE (else the tail), the surname with
# LAST_NAME_HEAD_SHARE (else a compound of a prefix and a suffix: 60 x 70 = 4,200).
FIRST_NAMES_TAIL = tuple(
    """
Aaron Adam Adrian Aidan Alan Albert Alfie Alice Alison Amanda Amber Amir Amy Andrea
Andrew Angela Anita Ann Anna Archie Arjun Arthur Ashley Barbara Beatrice Bethany
Beverley Brandon Brenda Brian Bruce Caitlin Callum Cameron Carl Carla Carol Caroline
Ceri Charles Chloe Claire Colin Connor Craig Dale Dana Darren Dawn Dean Declan
Denise Derek Diana Dominic Donna Dylan Eileen Elaine Eleanor Elena Ella Ellie Emily
Emma Eric Erin Ethan Eve Evelyn Faith Fiona Florence Freya Gareth Gavin Gemma George
Georgia Gillian Glen Gordon Grace Graham Gwen Hamza Harriet Harry Harvey Hassan
Hayley Heather Helen Henry Hugo Ian Imogen Iris Isaac Isabel Isla Ivan Jack Jacob
Jade Jake Jamal Jane Janet Jasmine Jason Jayden Jean Joan Joanne Joel John Jordan
Josephine Joshua Joy Julia Julian Julie June Karen Karim Kasia Keith Kelly Kevin
Kieran Kirsty Laura Lauren Layla Leah Lee Leo Leon Lewis Liam Lily Linda Lisa Logan
Louise Luca Lucy Luke Lydia Mabel Maria Marie Mark Martin Mary Maya Megan Mia Molly
Naomi Nathan Neil Niamh Noah Nora Owen Paul Paula Peter Phoebe Rachel Rhys Rita
Rosie Ruby Ruth Ryan Sally Sandra Sara Scott Sean Sharon Sian Simon Sofia Sophie
Stacey Stephen Stuart Tara Teresa Theo Tina Toby Tracy Tyler Usman Vanessa Wendy
Yasmin Yusuf Zara Zain
""".split()
)
SURNAME_PREFIXES = tuple(
    """
Ash Bad Bar Beck Black Bram Brad Brook Brom Burn Cald Carl Chad Chap Clay Cold Crank
Dal Dun East Elm Fair Farn Ford Gold Grant Green Hal Ham Hart Hay Hol Kent Kirk Lang
Lock Long Mar Mid Mor Nor Oak Pem Rad Red Rock Rush Sand Shel Stan Stock Sut Thorn
Tun Wake Wal West Whit Win Wood
""".split()
)
SURNAME_SUFFIXES = tuple(
    """
bank bourne bridge brook burn bury by cliffe combe cote croft dale den don ell er
field ford gate green ham hampton hill hirst holme hope hurst ington kin land ley
low man mere more ner ney nott over rick ridge ritt row shaw son stead stone thorpe
ton tree ville wall ward well wick win wood worth wright yard acre beck cock dike
end fold ing lake mont wade
""".split()
)
FIRST_NAME_HEAD_SHARE = 0.4
LAST_NAME_HEAD_SHARE = 0.3
EMAIL_PROVIDERS = ("gmail.com", "outlook.com", "yahoo.co.uk", "hotmail.com", "icloud.com")
STREETS = (
    "High Street",
    "Station Road",
    "Church Lane",
    "Victoria Road",
    "Green Lane",
    "Manor Road",
    "Park Avenue",
    "Queens Road",
    "Mill Lane",
    "Kings Road",
    "New Street",
    "The Crescent",
    "Grange Road",
    "Springfield Road",
    "Windsor Close",
)
POSTCODE_AREAS = {
    "London": ("E", "N", "SE", "SW", "W", "NW", "EC"),
    "South East": ("BN", "GU", "RH", "ME", "CT"),
    "North West": ("M", "L", "PR", "WA", "BL"),
    "Scotland": ("EH", "G", "AB", "DD", "KY"),
    "Midlands": ("B", "CV", "LE", "NG", "DE"),
    "Wales": ("CF", "SA", "LL", "NP"),
    "South West": ("BS", "EX", "PL", "TR", "BA"),
}
PLACEHOLDERS = {
    "email": "test@test.com",
    "phone": "0000000000",
    "postcode": "N/A",
    "date_of_birth": "1900-01-01",
}
SYSTEM_WEIGHTS = {"web": 0.45, "app": 0.35, "call_centre": 0.20}


@dataclass(frozen=True)
class WorldSpec:
    """Everything that generated a data set, as written to truth/parameters.json."""

    segments: tuple[SegmentSpec, ...] = SEGMENTS
    bots: BotSpec = BOTS
    system_weights: dict[str, float] = field(default_factory=lambda: dict(SYSTEM_WEIGHTS))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "segments": [asdict(s) for s in self.segments],
            "bots": asdict(self.bots),
            "system_weights": self.system_weights,
        }
