"""Reference data of the demo hospital group: sites, care-unit tree, units, rights, labs, forms, parameters."""

from __future__ import annotations


def luhn_check_digit(digits: str) -> str:
    """The Luhn check digit for ``digits`` (FINESS numbers end with one)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:  # doubled digits are those right before the check digit, every other one
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def finess(departement: str, category: str, serial: int) -> str:
    """A 9-digit FINESS number: département (2), category digit, 5-digit serial, Luhn check digit."""
    body = f"{departement}{category}{serial:05d}"
    return body + luhn_check_digit(body)


def luhn_valid(number: str) -> bool:
    """True when the last digit of ``number`` is its Luhn check digit."""
    return number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


# (site number, name, city, FINESS). Fictitious group of the Loire valley; FINESS numbers are made up
# but well formed, so the demo never impersonates a real hospital.
ETABLISSEMENTS: tuple[tuple[int, str, str, str], ...] = (
    (1, "Centre Hospitalier Universitaire Saint-Jacques", "Tours", finess("37", "0", 18)),
    (2, "Centre Hospitalier Jean-Moulin", "Blois", finess("41", "0", 24)),
    (3, "Hôpital Local des Tilleuls", "Amboise", finess("37", "0", 431)),
)

# Pôle code → (label, services). A service is (code suffix, label, UF kinds); UF kinds come from UF_KINDS.
POLES: dict[str, tuple[str, tuple[tuple[str, str, str], ...]]] = {
    "MED": (
        "Pôle Médecine",
        (
            ("CARDIO", "Cardiologie", "HCJ"),
            ("PNEUMO", "Pneumologie", "HJ"),
            ("GASTRO", "Gastro-entérologie", "HC"),
            ("NEURO", "Neurologie", "HCU"),
            ("MIP", "Médecine interne et polyvalente", "HC"),
            ("GERIA", "Gériatrie", "HS"),
        ),
    ),
    "CHIR": (
        "Pôle Chirurgie",
        (
            ("VISC", "Chirurgie viscérale et digestive", "HA"),
            ("ORTHO", "Orthopédie-Traumatologie", "HCA"),
            ("URO", "Urologie", "HA"),
            ("ANEST", "Anesthésie - Bloc opératoire", "B"),
        ),
    ),
    "URG": (
        "Pôle Urgences - Réanimation",
        (
            ("URG", "Urgences adultes", "UZ"),
            ("REA", "Réanimation polyvalente", "RS"),
        ),
    ),
    "FME": (
        "Pôle Femme-Mère-Enfant",
        (
            ("PEDIA", "Pédiatrie", "HJ"),
            ("NEONAT", "Néonatologie", "HR"),
            ("GYNOB", "Gynécologie-Obstétrique", "HC"),
        ),
    ),
    "MT": (
        "Pôle Médico-technique",
        (
            ("PHARMA", "Pharmacie à usage intérieur", "P"),
            ("LABO", "Laboratoire de biologie médicale", "L"),
        ),
    ),
}

UF_KINDS: dict[str, str] = {
    "H": "Hospitalisation complète",
    "C": "Consultations",
    "J": "Hôpital de jour",
    "U": "Unité neuro-vasculaire",
    "S": "Soins de suite et de réadaptation",
    "A": "Chirurgie ambulatoire",
    "B": "Bloc opératoire central",
    "Z": "Zone de surveillance de très courte durée",
    "R": "Réanimation",
    "P": "Pharmacie - Dispensation",
    "L": "Laboratoire - Plateau technique",
}

# Which pôles and services each site runs (the CHU runs everything).
SITE_POLES: dict[int, dict[str, tuple[str, ...] | None]] = {
    1: {"MED": None, "CHIR": None, "URG": None, "FME": None, "MT": None},
    2: {"MED": ("CARDIO", "PNEUMO", "GERIA"), "CHIR": ("VISC", "ORTHO"), "URG": ("URG",), "FME": ("GYNOB",)},
    3: {"MED": ("MIP", "GERIA")},
}

UNITES_MESURE: tuple[tuple[str, str], ...] = (
    ("mg", "milligramme"),
    ("g", "gramme"),
    ("µg", "microgramme"),
    ("mL", "millilitre"),
    ("UI", "unité internationale"),
    ("mmol", "millimole"),
    ("mg/kg", "milligramme par kilogramme"),
    ("µg/kg/min", "microgramme par kilogramme et par minute"),
    ("UI/kg", "unité internationale par kilogramme"),
    ("goutte", "goutte"),
    ("bouffée", "bouffée"),
    ("mmol/L", "millimole par litre"),
    ("µmol/L", "micromole par litre"),
    ("g/L", "gramme par litre"),
    ("mg/L", "milligramme par litre"),
    ("G/L", "giga par litre"),
    ("%", "pourcentage"),
    ("s", "seconde"),
    ("ng/L", "nanogramme par litre"),
    ("ng/mL", "nanogramme par millilitre"),
    ("pg/mL", "picogramme par millilitre"),
    ("UI/L", "unité internationale par litre"),
    ("µg/L", "microgramme par litre"),
    ("mUI/L", "milli-unité internationale par litre"),
    ("kPa", "kilopascal"),
    ("mm/h", "millimètre par heure"),
)

DROITS: tuple[tuple[str, str, str], ...] = (
    ("PRESC_MED", "Prescrire des médicaments", "PRESCRIPTION"),
    ("PRESC_STUP", "Prescrire des stupéfiants", "PRESCRIPTION"),
    ("PRESC_BIO", "Prescrire des examens de biologie", "PRESCRIPTION"),
    ("PRESC_IMAGERIE", "Prescrire des examens d'imagerie", "PRESCRIPTION"),
    ("PRESC_PROTOCOLE", "Appliquer un protocole de prescription", "PRESCRIPTION"),
    ("PRESC_ANTICIPEE", "Prescription anticipée personnalisée", "PRESCRIPTION"),
    ("DOS_LECTURE", "Consulter le dossier patient", "DOSSIER"),
    ("DOS_ECRITURE", "Saisir dans le dossier patient", "DOSSIER"),
    ("DOS_CR", "Rédiger et valider un compte rendu", "DOSSIER"),
    ("DOS_SORTIE", "Valider la sortie du patient", "DOSSIER"),
    ("DOS_BRISE_GLACE", "Accès exceptionnel (bris de glace)", "DOSSIER"),
    ("SOINS_ADMIN", "Tracer l'administration des médicaments", "SOINS"),
    ("SOINS_PLAN", "Planifier les soins", "SOINS"),
    ("SOINS_TRANSMISSIONS", "Saisir les transmissions ciblées", "SOINS"),
    ("SOINS_CONSTANTES", "Saisir les constantes", "SOINS"),
    ("PHA_VALIDATION", "Validation pharmaceutique des prescriptions", "PHARMACIE"),
    ("PHA_DISPENSATION", "Dispensation nominative", "PHARMACIE"),
    ("PHA_LIVRET", "Gérer le livret thérapeutique", "PHARMACIE"),
    ("BIO_VALIDATION", "Validation biologique des résultats", "BIOLOGIE"),
    ("BIO_RESULTATS", "Consulter les résultats de biologie", "BIOLOGIE"),
    ("ADM_PARAMETRAGE", "Modifier le paramétrage", "ADMIN"),
    ("ADM_UTILISATEURS", "Gérer les comptes utilisateurs", "ADMIN"),
    ("ADM_PROTOCOLES", "Gérer les protocoles de prescription", "ADMIN"),
    ("ADM_STRUCTURES", "Gérer les unités fonctionnelles", "ADMIN"),
)

# Profile code → (label, rights, UF scope). Scope "*" means every UF of the group's care services
# (resolved by the content builder); a tuple lists service codes whose UFs are authorised.
PROFILS: tuple[tuple[str, str, tuple[str, ...], str | tuple[str, ...]], ...] = (
    (
        "MED_SENIOR",
        "Médecin senior",
        (
            "PRESC_MED",
            "PRESC_STUP",
            "PRESC_BIO",
            "PRESC_IMAGERIE",
            "PRESC_PROTOCOLE",
            "PRESC_ANTICIPEE",
            "DOS_LECTURE",
            "DOS_ECRITURE",
            "DOS_CR",
            "DOS_SORTIE",
            "DOS_BRISE_GLACE",
            "BIO_RESULTATS",
        ),
        "*",
    ),
    (
        "MED_INTERNE",
        "Interne en médecine",
        (
            "PRESC_MED",
            "PRESC_BIO",
            "PRESC_IMAGERIE",
            "PRESC_PROTOCOLE",
            "DOS_LECTURE",
            "DOS_ECRITURE",
            "DOS_CR",
            "BIO_RESULTATS",
        ),
        "*",
    ),
    (
        "MED_URG",
        "Urgentiste",
        (
            "PRESC_MED",
            "PRESC_STUP",
            "PRESC_BIO",
            "PRESC_IMAGERIE",
            "PRESC_PROTOCOLE",
            "DOS_LECTURE",
            "DOS_ECRITURE",
            "DOS_CR",
            "DOS_SORTIE",
            "DOS_BRISE_GLACE",
            "BIO_RESULTATS",
        ),
        ("URG",),
    ),
    (
        "MED_REA",
        "Réanimateur",
        (
            "PRESC_MED",
            "PRESC_STUP",
            "PRESC_BIO",
            "PRESC_IMAGERIE",
            "PRESC_PROTOCOLE",
            "DOS_LECTURE",
            "DOS_ECRITURE",
            "DOS_CR",
            "DOS_SORTIE",
            "BIO_RESULTATS",
        ),
        ("REA", "ANEST"),
    ),
    (
        "IDE",
        "Infirmier(ère) diplômé(e) d'État",
        (
            "SOINS_ADMIN",
            "SOINS_PLAN",
            "SOINS_TRANSMISSIONS",
            "SOINS_CONSTANTES",
            "DOS_LECTURE",
            "BIO_RESULTATS",
        ),
        ("CARDIO", "PNEUMO", "GASTRO", "NEURO", "MIP", "GERIA", "VISC", "ORTHO", "URO"),
    ),
    (
        "IDE_REA",
        "Infirmier(ère) de réanimation",
        (
            "SOINS_ADMIN",
            "SOINS_PLAN",
            "SOINS_TRANSMISSIONS",
            "SOINS_CONSTANTES",
            "DOS_LECTURE",
            "BIO_RESULTATS",
            "PRESC_ANTICIPEE",
        ),
        ("REA",),
    ),
    (
        "SAGE_FEMME",
        "Sage-femme",
        (
            "PRESC_MED",
            "PRESC_BIO",
            "SOINS_ADMIN",
            "SOINS_CONSTANTES",
            "DOS_LECTURE",
            "DOS_ECRITURE",
            "BIO_RESULTATS",
        ),
        ("GYNOB", "NEONAT"),
    ),
    (
        "PHARMACIEN",
        "Pharmacien",
        ("PHA_VALIDATION", "PHA_DISPENSATION", "PHA_LIVRET", "DOS_LECTURE", "BIO_RESULTATS"),
        ("PHARMA",),
    ),
    (
        "PREPARATEUR",
        "Préparateur en pharmacie",
        ("DOS_LECTURE",),
        ("PHARMA",),
    ),
    (
        "BIOLOGISTE",
        "Biologiste",
        ("BIO_VALIDATION", "BIO_RESULTATS", "DOS_LECTURE"),
        ("LABO",),
    ),
    (
        "SECRETAIRE_MED",
        "Secrétaire médicale",
        ("DOS_LECTURE", "DOS_CR"),
        ("CARDIO", "PNEUMO", "NEURO", "ORTHO", "GYNOB"),
    ),
    (
        "ADMIN_DPI",
        "Administrateur fonctionnel du DPI",
        ("ADM_PARAMETRAGE", "ADM_UTILISATEURS", "ADM_PROTOCOLES", "ADM_STRUCTURES", "DOS_LECTURE"),
        (),
    ),
)

# (LOINC code, label, tube, unit code or None when the result has no unit)
EXAMENS_LABO: tuple[tuple[str, str, str, str | None], ...] = (
    ("2951-2", "Sodium", "Hépariné lithium (vert)", "mmol/L"),
    ("2823-3", "Potassium", "Hépariné lithium (vert)", "mmol/L"),
    ("2075-0", "Chlorure", "Hépariné lithium (vert)", "mmol/L"),
    ("14682-9", "Créatinine", "Hépariné lithium (vert)", "µmol/L"),
    ("22664-7", "Urée", "Hépariné lithium (vert)", "mmol/L"),
    ("14749-6", "Glucose", "Fluoré (gris)", "mmol/L"),
    ("1988-5", "Protéine C réactive", "Hépariné lithium (vert)", "mg/L"),
    ("33959-8", "Procalcitonine", "Hépariné lithium (vert)", "ng/mL"),
    ("718-7", "Hémoglobine", "EDTA (violet)", "g/L"),
    ("6690-2", "Leucocytes", "EDTA (violet)", "G/L"),
    ("777-3", "Plaquettes", "EDTA (violet)", "G/L"),
    ("4537-7", "Vitesse de sédimentation", "Citraté VS (noir)", "mm/h"),
    ("5894-1", "Taux de prothrombine", "Citraté (bleu)", "%"),
    ("6301-6", "INR", "Citraté (bleu)", None),
    ("14979-9", "Temps de céphaline activée", "Citraté (bleu)", "s"),
    ("3255-7", "Fibrinogène", "Citraté (bleu)", "g/L"),
    ("48065-7", "D-dimères", "Citraté (bleu)", "µg/L"),
    ("10839-9", "Troponine I hypersensible", "Hépariné lithium (vert)", "ng/L"),
    ("33762-6", "NT-proBNP", "Hépariné lithium (vert)", "pg/mL"),
    ("1920-8", "ASAT", "Hépariné lithium (vert)", "UI/L"),
    ("1742-6", "ALAT", "Hépariné lithium (vert)", "UI/L"),
    ("2324-2", "Gamma-GT", "Hépariné lithium (vert)", "UI/L"),
    ("6768-6", "Phosphatases alcalines", "Hépariné lithium (vert)", "UI/L"),
    ("14631-6", "Bilirubine totale", "Hépariné lithium (vert)", "µmol/L"),
    ("3040-3", "Lipase", "Hépariné lithium (vert)", "UI/L"),
    ("1751-7", "Albumine", "Hépariné lithium (vert)", "g/L"),
    ("2524-7", "Lactates", "Fluoré (gris)", "mmol/L"),
    ("2276-4", "Ferritine", "Sec (rouge)", "µg/L"),
    ("3016-3", "TSH", "Sec (rouge)", "mUI/L"),
    ("4548-4", "Hémoglobine glyquée (HbA1c)", "EDTA (violet)", "%"),
    ("17861-6", "Calcium", "Hépariné lithium (vert)", "mmol/L"),
    ("14879-1", "Phosphore", "Hépariné lithium (vert)", "mmol/L"),
    ("2744-1", "pH artériel", "Seringue héparinée (gaz du sang)", None),
    ("2703-7", "PaO2", "Seringue héparinée (gaz du sang)", "kPa"),
    ("2019-8", "PaCO2", "Seringue héparinée (gaz du sang)", "kPa"),
    ("4092-3", "Vancomycine (résiduelle)", "Sec (rouge)", "mg/L"),
    ("35668-3", "Gentamicine (pic)", "Sec (rouge)", "mg/L"),
    ("600-7", "Hémocultures", "Flacons aérobie et anaérobie", None),
    ("630-4", "Examen cytobactériologique des urines", "Pot stérile", None),
)

# Form code → (label, version, fields); a field is (code, label, type, mandatory).
FORMULAIRES: dict[str, tuple[str, int, tuple[tuple[str, str, str, bool], ...]]] = {
    "ADM_ENTREE": (
        "Recueil de données d'entrée",
        3,
        (
            ("MOTIF", "Motif d'hospitalisation", "TEXTE", True),
            ("DATE_ENTREE", "Date d'entrée", "DATE", True),
            ("MODE_ENTREE", "Mode d'entrée", "LISTE", True),
            ("PERSONNE_CONFIANCE", "Personne de confiance", "TEXTE", False),
            ("MEDECIN_TRAITANT", "Médecin traitant", "TEXTE", False),
            ("FAX_MEDECIN_TRAITANT", "Fax du médecin traitant", "TEXTE", False),
            ("ALLERGIES", "Allergies connues", "TEXTE", True),
            ("POIDS", "Poids (kg)", "NOMBRE", True),
            ("TAILLE", "Taille (cm)", "NOMBRE", False),
        ),
    ),
    "EVAL_DOULEUR": (
        "Évaluation de la douleur",
        2,
        (
            ("ECHELLE", "Échelle utilisée", "LISTE", True),
            ("EVA", "Score EVA (0-10)", "NOMBRE", False),
            ("EN", "Échelle numérique (0-10)", "NOMBRE", False),
            ("LOCALISATION", "Localisation", "TEXTE", False),
            ("REEVALUATION", "Réévaluation prévue le", "DATE", False),
        ),
    ),
    "BRADEN": (
        "Échelle de Braden (risque d'escarre)",
        1,
        (
            ("PERCEPTION", "Perception sensorielle", "LISTE", True),
            ("HUMIDITE", "Humidité", "LISTE", True),
            ("ACTIVITE", "Activité", "LISTE", True),
            ("MOBILITE", "Mobilité", "LISTE", True),
            ("NUTRITION", "Nutrition", "LISTE", True),
            ("FRICTION", "Friction et cisaillement", "LISTE", True),
            ("SCORE", "Score total", "NOMBRE", True),
        ),
    ),
    "RISQUE_CHUTE": (
        "Évaluation du risque de chute",
        1,
        (
            ("ANTECEDENT_CHUTE", "Chute dans les 12 derniers mois", "LISTE", True),
            ("TRAITEMENT_A_RISQUE", "Traitement à risque", "LISTE", False),
            ("AIDE_MARCHE", "Aide à la marche", "LISTE", False),
            ("CONCLUSION", "Conclusion", "TEXTE", True),
        ),
    ),
    "SURV_TRANSFUSION": (
        "Surveillance transfusionnelle",
        2,
        (
            ("NUM_PRODUIT", "Numéro du produit sanguin", "TEXTE", True),
            ("HEURE_DEBUT", "Heure de début", "DATE", True),
            ("TA_DEBUT", "Tension artérielle au début", "TEXTE", True),
            ("TEMPERATURE", "Température (°C)", "NOMBRE", True),
            ("EFFET_INDESIRABLE", "Effet indésirable", "LISTE", True),
        ),
    ),
    "NEWS2": (
        "Score NEWS2",
        1,
        (
            ("FR", "Fréquence respiratoire", "NOMBRE", True),
            ("SPO2", "Saturation en oxygène (%)", "NOMBRE", True),
            ("O2", "Oxygénothérapie", "LISTE", True),
            ("PAS", "Pression artérielle systolique", "NOMBRE", True),
            ("FC", "Fréquence cardiaque", "NOMBRE", True),
            ("CONSCIENCE", "Niveau de conscience", "LISTE", True),
            ("TEMPERATURE", "Température (°C)", "NOMBRE", True),
        ),
    ),
    "SYNTHESE_SORTIE": (
        "Synthèse de sortie",
        4,
        (
            ("DATE_SORTIE", "Date de sortie", "DATE", True),
            ("MODE_SORTIE", "Mode de sortie", "LISTE", True),
            ("DESTINATION", "Destination", "TEXTE", False),
            ("TRAITEMENT_SORTIE", "Traitement de sortie", "TEXTE", True),
            ("RDV_SUIVI", "Rendez-vous de suivi", "DATE", False),
        ),
    ),
}

PARAMETRES_GLOBAUX: tuple[tuple[str, str, str], ...] = (
    ("SESSION.TIMEOUT_MINUTES", "15", "Verrouillage de session après inactivité"),
    ("SESSION.CARTE_CPS_OBLIGATOIRE", "true", "Authentification par carte CPS/e-CPS"),
    ("PRESCRIPTION.DUREE_MAX_JOURS", "30", "Durée maximale d'une ligne de prescription"),
    ("PRESCRIPTION.STUP.DUREE_MAX_JOURS", "7", "Durée maximale d'une prescription de stupéfiant"),
    ("PRESCRIPTION.VALIDATION_PHARMA", "true", "Validation pharmaceutique obligatoire"),
    ("ALERTE.DOSE.MODE", "BLOQUANT", "Comportement sur dépassement de dose (BLOQUANT ou AVERTISSEMENT)"),
    ("ALERTE.INTERACTIONS.NIVEAU_MIN", "PRECAUTION", "Niveau minimal d'interaction affiché"),
    ("ALERTE.ALLERGIE.BLOQUANTE", "true", "Blocage de la prescription d'un allergène connu"),
    ("ADMINISTRATION.FENETRE_MINUTES", "60", "Fenêtre de tolérance autour de l'heure prévue"),
    ("DOSSIER.BRISE_GLACE.DUREE_HEURES", "24", "Durée d'un accès exceptionnel"),
    ("DOSSIER.ARCHIVAGE.ANNEES", "20", "Durée de conservation du dossier"),
    ("LABO.DELAI_URGENT_MINUTES", "60", "Délai de rendu d'un bilan urgent"),
    ("LABO.RESULTATS_CRITIQUES.APPEL", "true", "Appel téléphonique des résultats critiques"),
    ("ETIQUETTES.FORMAT", "DATAMATRIX", "Format des étiquettes patient"),
    ("INTEROP.DMP.ENVOI_AUTO", "true", "Envoi automatique du compte rendu au DMP"),
    ("INTEROP.MSSANTE.ACTIF", "true", "Envoi des courriers par messagerie sécurisée de santé"),
    ("INS.QUALIFICATION_OBLIGATOIRE", "true", "Identité nationale de santé qualifiée avant envoi"),
    ("DOULEUR.REEVALUATION_HEURES", "4", "Délai de réévaluation de la douleur"),
    ("TRANSFUSION.DOUBLE_CONTROLE", "true", "Double contrôle ultime au lit du patient"),
    ("PLANNING.DEBUT_JOURNEE", "07:00", "Heure de début de la journée de soins"),
)
